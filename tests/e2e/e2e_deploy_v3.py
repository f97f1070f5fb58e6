"""Deploy v3 of ``order``: the swap of v2 done right, behind ``ctx.patched`` (instances started
on v1 keep the old path; tests/e2e/test_e2e_deploy.py)."""

from __future__ import annotations

from typing import Any

from durable_redis.core import OrchestrationContext
from tests.e2e.e2e_deploy_common import deploy_app

app, reserve, ship = deploy_app()


@app.orchestration(name="order")
async def order(ctx: OrchestrationContext, item: str) -> list[Any]:
    if ctx.patched("ship-before-reserve"):
        shipped = await ctx.call_activity(ship, item)
        paid = await ctx.wait_for_event("paid")
        reserved = await ctx.call_activity(reserve, item)
    else:
        reserved = await ctx.call_activity(reserve, item)
        paid = await ctx.wait_for_event("paid")
        shipped = await ctx.call_activity(ship, item)
    return [reserved, paid, shipped]
