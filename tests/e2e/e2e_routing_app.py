"""The app of the routing e2e tests (``e2e_routing_app:app``): activities that report the pid
of the process that ran them; ``gpu_work`` is registered on the "gpu" queue. ``hold`` blocks
until the test writes ``release-<name>`` in ``dir`` (a ``started-<name>`` marker first).
Orchestrations call them (``routed_calls``), run a session on "gpu" (``gpu_session``) and
schedule calls of mixed priorities at once (``prioritized``; ``log_order`` appends the order
the calls ran in to a file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

from durable_redis.core import ActivityContext, App, OrchestrationContext

app = App("e2e-routing", max_sessions_per_orchestration=10)
_session_counts: dict[str, int] = {}  # per process: steps each session ran here


@app.activity(queue="gpu")
def gpu_work(ctx: ActivityContext, n: int) -> dict[str, Any]:
    return {"pid": os.getpid(), "n": n}


@app.activity
def cpu_work(ctx: ActivityContext, n: int) -> dict[str, Any]:
    return {"pid": os.getpid(), "n": n}


@app.activity(queue="gpu")
async def hold(ctx: ActivityContext, args: dict[str, Any]) -> dict[str, Any]:
    d = Path(args["dir"])
    (d / f"started-{args['name']}").touch()
    while not (d / f"release-{args['name']}").exists():
        await anyio.sleep(0.05)
    return {"pid": os.getpid()}


@app.activity
def session_step(ctx: ActivityContext, n: int) -> dict[str, Any]:
    key = f"{ctx.instance_id}/{ctx.session_id}"
    _session_counts[key] = _session_counts.get(key, 0) + 1
    return {"pid": os.getpid(), "n": n, "count": _session_counts[key]}


@app.activity
def log_order(ctx: ActivityContext, args: dict[str, Any]) -> int:
    with open(args["file"], "a", encoding="utf-8") as f:
        f.write(f"{args['p']}:{args['i']}\n")
    return int(args["i"])


@app.orchestration
async def routed_calls(ctx: OrchestrationContext, n: int) -> dict[str, list[int]]:
    """Activities on their registered queue, and with the call's override."""
    calls = {
        "gpu": [ctx.call_activity(gpu_work, i) for i in range(n)],
        "default": [ctx.call_activity(cpu_work, i) for i in range(n)],
        "to_default": [ctx.call_activity(gpu_work, i, queue="default") for i in range(2)],
        "to_gpu": [ctx.call_activity(cpu_work, i, queue="gpu") for i in range(2)],
        "by_name": [ctx.call_activity("gpu_work", i) for i in range(2)],
    }
    return {k: [(await f)["pid"] for f in fs] for k, fs in calls.items()}


@app.orchestration
async def gpu_session(ctx: OrchestrationContext, n: int) -> list[dict[str, Any]]:
    """A session opened for "gpu": every step runs on one worker serving "gpu"."""
    sid = await ctx.open_session(queue="gpu")
    out = []
    for i in range(n):
        out.append(await ctx.call_activity(session_step, i, session=sid))
    await ctx.close_session(sid)
    return out


@app.orchestration
async def prioritized(ctx: OrchestrationContext, args: dict[str, Any]) -> list[int]:
    """Calls of mixed priorities, all scheduled in one turn on the "prio" queue."""
    futures = [
        ctx.call_activity(
            log_order, {"file": args["file"], "p": p, "i": i}, queue="prio", priority=p
        )
        for i, p in enumerate(args["priorities"])
    ]
    return [await f for f in futures]


@app.orchestration
async def held_calls(ctx: OrchestrationContext, args: dict[str, Any]) -> list[int]:
    """One ``hold`` (gpu) call, then, once it returned, ``n`` quick gpu calls."""
    await ctx.call_activity(hold, args)
    return [(await ctx.call_activity(gpu_work, i))["n"] for i in range(args["n"])]


@app.orchestration
async def gpu_session_held(ctx: OrchestrationContext, args: dict[str, Any]) -> list[int]:
    """A gpu session whose second step blocks (``hold``) until the test releases it."""
    sid = await ctx.open_session(queue="gpu")
    first = await ctx.call_activity(session_step, 0, session=sid)
    held = await ctx.call_activity(hold, args, session=sid)
    last = await ctx.call_activity(session_step, 2, session=sid)
    return [first["pid"], held["pid"], last["pid"]]


@app.orchestration
async def held_pid(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    """One ``hold`` (gpu) call: the pid of the worker that finished it."""
    return int((await ctx.call_activity(hold, args))["pid"])
