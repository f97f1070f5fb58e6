"""Deploy v2 of ``order``, a bad deploy: the two steps swapped (ship before reserve), so an
instance started on v1 no longer replays (tests/e2e/test_e2e_deploy.py)."""

from __future__ import annotations

from typing import Any

from durable_redis.core import OrchestrationContext
from tests.e2e.e2e_deploy_common import deploy_app

app, reserve, ship = deploy_app()


@app.orchestration(name="order")
async def order(ctx: OrchestrationContext, item: str) -> list[Any]:
    shipped = await ctx.call_activity(ship, item)
    paid = await ctx.wait_for_event("paid")
    reserved = await ctx.call_activity(reserve, item)
    return [reserved, paid, shipped]
