"""The app of the flow-control e2e tests (``e2e_flow_app:app``). Every activity appends
``start|end <key> <unix time> <pid> <n>`` lines to the log file named in its input (one
``write`` per line, O_APPEND, so the lines of concurrent processes never mix), which is what
the tests compute concurrency and rates from."""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.core.jobs import Limit

app = App("e2e-flow")


def note(path: str, what: str, key: str, n: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {key} {time.time():.6f} {os.getpid()} {n}\n".encode())
    finally:
        os.close(fd)


async def _work(args: dict[str, Any]) -> dict[str, Any]:
    note(args["log"], "start", args["tenant"], args["n"])
    await anyio.sleep(args.get("ms", 0) / 1000)
    note(args["log"], "end", args["tenant"], args["n"])
    return {"pid": os.getpid(), "n": args["n"]}


@app.activity(limit=Limit(key="tenant:{tenant}", concurrency=5))
async def tenant_work(ctx: ActivityContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _work(args)


# burst 10: the rate's credit (450 ms) absorbs a worker woken late on a loaded machine (with 5,
# 200 ms, CI's cluster stage lost 11 % of its starts to late wake-ups; the rate never ran over)
@app.activity(limit=Limit(key=lambda a: a["tenant"], rate=20, per=1, burst=10))
async def rated_work(ctx: ActivityContext, args: dict[str, Any]) -> dict[str, Any]:
    return await _work(args)


@app.activity
async def keyed_work(ctx: ActivityContext, args: dict[str, Any]) -> dict[str, Any]:
    """No limit of its own: the tests pass ``limit=`` per call."""
    return await _work(args)


@app.orchestration
async def fan_out(ctx: OrchestrationContext, args: dict[str, Any]) -> list[int]:
    """Calls ``tenant_work`` (its registered limit: 5 per tenant) on every item at once."""
    calls = [ctx.call_activity(tenant_work, item) for item in args["items"]]
    return [r["n"] for r in await ctx.when_all(calls)]


@app.orchestration
async def fan_out_limited(ctx: OrchestrationContext, args: dict[str, Any]) -> list[int]:
    """Calls ``keyed_work`` on every item with the call's own limit (``args["limit"]``:
    concurrency, rate, per, burst)."""
    conc, rate, per, burst = args["limit"]
    limit = Limit(key="{tenant}", concurrency=conc, rate=rate, per=per, burst=burst)
    calls = [ctx.call_activity(keyed_work, item, limit=limit) for item in args["items"]]
    return [r["n"] for r in await ctx.when_all(calls)]


@app.orchestration(limit=Limit(key="{tenant}", concurrency=1))
async def singleton_run(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    """At most one running per tenant (its registered limit): runs ``keyed_work`` once."""
    return int((await ctx.call_activity(keyed_work, args))["n"])


@app.orchestration
async def one_run(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    """Runs ``keyed_work`` once; the tests start it with a debounce or throttle ``limit=``."""
    return int((await ctx.call_activity(keyed_work, args))["n"])
