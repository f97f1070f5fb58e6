"""Deploying changed orchestration code: an order started on v1 completes on v2 through
``ctx.patched``, and the replay gate catches the same change made without the patch."""

from __future__ import annotations

import pytest

from durable_redis import ActivityContext, App, NondeterminismError, OrchestrationContext
from durable_redis.testing import TestEnvironment, assert_replays

v1 = App("orders")  # the code in production
v2 = App("orders")  # the change, guarded by a patch
v2_unpatched = App("orders")  # the same change, made carelessly


def reserve(ctx: ActivityContext, item: str) -> str:
    return f"reserved {item}"


def ship(ctx: ActivityContext, item: str) -> str:
    return f"shipped {item}"


for app in (v1, v2, v2_unpatched):
    app.activity(reserve)
    app.activity(ship)


@v1.orchestration(name="order")
async def order_v1(ctx: OrchestrationContext, item: str) -> list[str]:
    reserved = await ctx.call_activity(reserve, item)
    paid = await ctx.wait_for_event("paid")
    return [reserved, paid, await ctx.call_activity(ship, item)]


@v2.orchestration(name="order")
async def order_v2(ctx: OrchestrationContext, item: str) -> list[str]:
    if ctx.patched("ship-first"):
        shipped = await ctx.call_activity(ship, item)
        paid = await ctx.wait_for_event("paid")
        return [shipped, paid, await ctx.call_activity(reserve, item)]
    reserved = await ctx.call_activity(reserve, item)  # the old path, unchanged
    paid = await ctx.wait_for_event("paid")
    return [reserved, paid, await ctx.call_activity(ship, item)]


@v2_unpatched.orchestration(name="order")
async def order_v2_unpatched(ctx: OrchestrationContext, item: str) -> list[str]:
    shipped = await ctx.call_activity(ship, item)
    paid = await ctx.wait_for_event("paid")
    return [shipped, paid, await ctx.call_activity(reserve, item)]


pytestmark = [pytest.mark.anyio, pytest.mark.durable_app(v1)]


async def test_an_order_started_on_v1_completes_on_v2(durable_env: TestEnvironment) -> None:
    client = durable_env.client
    old = await client.start("order", "book")
    await durable_env.run_until_idle()  # reserved, now waiting for "paid"
    history = await client.get_history(old)

    assert_replays(v2, history)  # the gate: v2 replays v1's history
    with pytest.raises(NondeterminismError, match="reserve"):
        assert_replays(v2_unpatched, history)  # ...the unpatched change does not

    await durable_env.deploy(v2)
    await client.raise_event(old, "paid", "card")
    assert await client.wait_for_completion(old, timeout=10) == [
        "reserved book",
        "card",
        "shipped book",
    ]
    new = await client.start("order", "pen")  # started on v2: the new path
    await durable_env.run_until_idle()
    await client.raise_event(new, "paid", "cash")
    assert await client.wait_for_completion(new, timeout=10) == [
        "shipped pen",
        "cash",
        "reserved pen",
    ]
