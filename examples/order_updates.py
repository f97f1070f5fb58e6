"""An order workflow you talk to while it runs: updates, state queries, a progress stream.

The orchestration answers ``add_item`` updates (a validator refuses bad items before anything
is recorded), keeps the cart in its key-value state (``ctx.set_value``: the client reads it
without a turn), and streams progress; a ``checkout`` update charges the card and finishes.
A retried update with the same id is applied once.
"""

from __future__ import annotations

from typing import Any

import anyio
from _support import finish, in_process_worker, redis_url, unique_namespace

from durable_redis import ActivityContext, App, Client, OrchestrationContext, UpdateRejectedError

app = App("orders")

PRICES = {"apple": 3, "pear": 4, "melon": 9}


@app.activity
async def charge(ctx: ActivityContext, amount: int) -> str:
    await ctx.append_stream_async({"charging": amount})  # activities may append too
    return f"charged {amount}"


@app.orchestration
async def order(ctx: OrchestrationContext, customer: str) -> dict[str, Any]:
    cart: list[str] = []
    receipt: list[str] = []
    done = ctx.wait_for_event("closed")  # resolved by the checkout update below

    def check_item(item: object) -> None:
        if item not in PRICES:
            raise ValueError(f"unknown item {item!r}")

    def add_item(item: str) -> int:
        cart.append(item)
        total = sum(PRICES[i] for i in cart)
        ctx.set_value("cart", cart)
        ctx.set_value("total", total)
        ctx.append_stream({"added": item, "total": total})
        return total

    async def checkout(_: Any) -> str:
        result: str = await ctx.call_activity(charge, sum(PRICES[i] for i in cart))
        receipt.append(result)
        ctx.raise_event(ctx.instance_id, "closed")  # an event to an instance (here, itself)
        return result

    ctx.set_update_handler("add_item", add_item, validator=check_item)
    ctx.set_update_handler("checkout", checkout)
    ctx.set_value("customer", customer)
    await done
    ctx.append_stream({"done": receipt[0]})
    return {"customer": customer, "items": cart, "receipt": receipt[0]}


async def main(url: str) -> dict[str, Any]:
    namespace = unique_namespace("orders")
    async with (
        in_process_worker(app, url, namespace),
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        iid = await client.start(order, "ann", instance_id="order-ann")
        totals = [
            await client.update(iid, "add_item", "apple", update_id="ann-1"),
            await client.update(iid, "add_item", "melon", update_id="ann-2"),
            await client.update(iid, "add_item", "melon", update_id="ann-2"),  # a retry: once
        ]
        try:
            await client.update(iid, "add_item", "rock")
            rejected = ""
        except UpdateRejectedError as exc:
            rejected = exc.details.message
        cart = await client.get_value(iid, "cart")
        receipt = await client.update(iid, "checkout")
        progress = [item.value async for item in client.stream(iid)]  # follows to the end
        result = await client.wait_for_completion(iid, timeout=20)
        return {
            "totals": totals,
            "rejected": rejected,
            "cart": cart,
            "receipt": receipt,
            "progress": progress,
            "result": result,
        }


if __name__ == "__main__":
    with redis_url() as url:
        got = anyio.run(main, url)
    for key, value in got.items():
        print(f"  {key}: {value}")
    finish(
        got["totals"] == [3, 12, 12]
        and got["rejected"] == "unknown item 'rock'"
        and got["cart"] == ["apple", "melon"]
        and got["receipt"] == "charged 12"
        and got["progress"][-2:] == [{"charging": 12}, {"done": "charged 12"}]
        and got["result"]["items"] == ["apple", "melon"],
        "2 items added by update (a retried one applied once), a bad one rejected, "
        "cart read without a turn, progress streamed to checkout",
    )
