"""Deploy v1 of the ``order`` orchestration (tests/e2e/test_e2e_deploy.py): reserve, wait for
``paid``, ship."""

from __future__ import annotations

from typing import Any

from durable_redis.core import OrchestrationContext
from tests.e2e.e2e_deploy_common import deploy_app

app, reserve, ship = deploy_app()


@app.orchestration(name="order")
async def order(ctx: OrchestrationContext, item: str) -> list[Any]:
    reserved = await ctx.call_activity(reserve, item)
    paid = await ctx.wait_for_event("paid")
    shipped = await ctx.call_activity(ship, item)
    return [reserved, paid, shipped]
