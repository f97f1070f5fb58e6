"""Wrong input types that ``mypy --strict`` must reject: each line marked ``# error`` has one.

Checked by ``tests/test_typing.py`` (never imported by the suite).
"""

from __future__ import annotations

from durable_redis import ActivityContext, App, Client, OrchestrationContext

app = App("typed-bad")


@app.activity
def charge(ctx: ActivityContext, amount: int) -> str:
    return f"receipt-{amount}"


@app.activity
async def charge_async(ctx: ActivityContext, amount: int) -> str:
    return f"receipt-{amount}"


@app.activity
def no_input(ctx: ActivityContext) -> int:
    return 1


@app.orchestration
async def pay(ctx: OrchestrationContext, amount: int) -> str:
    await ctx.call_activity(charge, "not an int")  # error
    await ctx.call_activity(charge_async, "not an int")  # error
    await ctx.call_activity(no_input, 5)  # error
    await ctx.call_local_activity(charge, "not an int")  # error
    return "done"


async def use_client(client: Client) -> None:
    await client.start(pay, "five")  # error
    instance_id = await client.start(pay, 5)
    receipt = await client.wait_for_completion(instance_id)
    amount: int = receipt  # error
    print(amount)
