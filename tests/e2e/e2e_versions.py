"""Two deploys of the ``quote`` orchestration side by side (tests/e2e/test_e2e_versions.py):
``e2e_versions:v1`` registers version "1" only, ``e2e_versions:v2`` version "2" only, and
``e2e_versions:v3`` version "3"; each returns which code ran it."""

from __future__ import annotations

import os

from durable_redis.core import ActivityContext, App, OrchestrationContext


def _deploy(version: str) -> App:
    app = App(f"e2e-versions-v{version}")

    @app.activity
    def price(ctx: ActivityContext, item: str) -> int:
        return len(item)

    @app.orchestration(name="quote", version=version)
    async def quote(ctx: OrchestrationContext, item: str) -> str:
        cents = await ctx.call_activity(price, item)
        return f"v{version} code in pid {os.getpid()}: {item} costs {cents}"

    return app


v1 = _deploy("1")
v2 = _deploy("2")
v3 = _deploy("3")
