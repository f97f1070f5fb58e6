"""The app the benchmark workers serve (``bench_app:app``): no-op activities, small workflows.

Worker processes import it as ``python -m durable_redis.runtime bench_app:app`` with the
``benchmarks/`` directory as their working directory.
"""

from __future__ import annotations

import os
from typing import Any

from durable_redis import ActivityContext, App, OrchestrationContext

app = App("bench", max_sessions_per_orchestration=10)


@app.activity
def noop(ctx: ActivityContext, x: Any = None) -> Any:
    return x


@app.activity(inline=True)
def noop_inline(ctx: ActivityContext, x: Any = None) -> Any:
    """``noop`` on the worker's event loop (no thread hop): chain100_inline, fanout1000_inline."""
    return x


@app.activity
def whereami(ctx: ActivityContext, x: Any = None) -> int:
    return os.getpid()


@app.orchestration
async def hello(ctx: OrchestrationContext, x: Any = None) -> Any:
    return await ctx.call_activity(noop, x)


@app.orchestration
async def chain(ctx: OrchestrationContext, n: int) -> int:
    for i in range(n):
        await ctx.call_activity(noop, i)
    return n


@app.orchestration
async def chain_local(ctx: OrchestrationContext, n: int) -> int:
    """``chain`` with local activities: each step runs inside the turn (no dispatch)."""
    for i in range(n):
        await ctx.call_local_activity(noop, i)
    return n


@app.orchestration
async def chain_inline(ctx: OrchestrationContext, n: int) -> int:
    for i in range(n):
        await ctx.call_activity(noop_inline, i)
    return n


@app.orchestration
async def fanout_inline(ctx: OrchestrationContext, n: int) -> int:
    results = await ctx.when_all([ctx.call_activity(noop_inline, i) for i in range(n)])
    return len(results)


@app.orchestration
async def fanout(ctx: OrchestrationContext, n: int) -> int:
    results = await ctx.when_all([ctx.call_activity(noop, i) for i in range(n)])
    return len(results)


@app.orchestration
async def timer(ctx: OrchestrationContext, ms: int) -> int:
    """Sleep ``ms`` on a durable timer; return how late it fired (turn time - due time, ms)."""
    before = ctx.now()
    await ctx.sleep(ms / 1000)
    after = ctx.now()
    return round((after - before).total_seconds() * 1000) - ms


@app.orchestration
async def session_turns(ctx: OrchestrationContext, turns: int) -> list[int]:
    """Open a session and run ``turns`` activities on it; return the pid of each."""
    sid = await ctx.open_session()
    pids = [await ctx.call_activity(whereami, i, session=sid) for i in range(turns)]
    await ctx.close_session(sid)
    return pids


@app.orchestration
async def mixed(ctx: OrchestrationContext, n: int) -> int:
    """The soak's workflow (benchmarks/soak.py): an activity, a 1 s durable timer, ``n``
    activities on a session (then closed), a fan-out of ``n``."""
    await ctx.call_activity(noop, 0)
    await ctx.sleep(1.0)
    sid = await ctx.open_session()
    for i in range(n):
        await ctx.call_activity(noop, i, session=sid)
    await ctx.close_session(sid)
    results = await ctx.when_all([ctx.call_activity(noop, i) for i in range(n)])
    return len(results)
