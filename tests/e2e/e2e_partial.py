"""A deployment that lags behind ``e2e_app``: it lacks the ``whoami`` activity and the
``only_on_full`` orchestration. Work naming them must wait (with back-off) for a worker that
knows them, never fail."""

from __future__ import annotations

from durable_redis.core import App, OrchestrationContext

app = App("e2e")


@app.orchestration
async def hello(ctx: OrchestrationContext, name: str) -> str:
    r = await ctx.call_activity("whoami", name)
    return f"hello {name} from {r['pid']}"
