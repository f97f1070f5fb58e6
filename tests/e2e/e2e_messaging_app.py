"""The app the messaging e2e tests' worker processes serve (``e2e_messaging_app:app``):
updates, key-value state, FIFO queues, events between instances, streams, history limits."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio

from durable_redis.core import ActivityContext, App, OrchestrationContext

app = App("e2e-messaging", max_history_events=60, continue_as_new_suggested_at=30)


@app.activity
async def hold(ctx: ActivityContext, args: dict[str, Any]) -> int:
    """Block until ``release-<name>`` exists in ``dir``; a ``started-`` marker per run."""
    d = Path(args["dir"])
    (d / f"started-{args['name']}-{os.getpid()}-{time.monotonic_ns()}").touch()
    while not (d / f"release-{args['name']}").exists():
        await anyio.sleep(0.05)
    return os.getpid()


@app.activity
async def report(ctx: ActivityContext, n: int) -> int:
    """Appends to its instance's progress stream from the activity side."""
    await ctx.append_stream_async({"activity": n})
    return n


@app.orchestration
async def order(ctx: OrchestrationContext, args: dict[str, Any]) -> dict[str, Any]:
    """Answers ``add`` (validated), ``add_slowly`` (waits on ``hold`` first) and ``total``;
    keeps its state in ``ctx.set_value`` and streams progress; ends on ``checkout``."""
    items: list[str] = list(args.get("items", []))

    def total() -> int:
        return len(items)

    def check(item: object) -> None:
        if not isinstance(item, str) or not item:
            raise ValueError("an item is a non-empty string")

    def add(item: str) -> int:
        items.append(item)
        ctx.set_value("items", items)
        ctx.append_stream({"added": item})
        return len(items)

    async def add_slowly(item: str) -> int:
        await ctx.call_activity(hold, {"dir": args["dir"], "name": item})
        return add(item)

    ctx.set_update_handler("add", add, validator=check)
    ctx.set_update_handler("add_slowly", add_slowly)
    ctx.set_update_handler("total", lambda _: total())
    ctx.set_value("items", items)
    await ctx.wait_for_event("checkout")
    ctx.append_stream({"done": len(items)})
    return {"items": items}


@app.orchestration
async def consumer(ctx: OrchestrationContext, seen: list[Any]) -> list[Any]:
    """Takes ``jobs`` queue events one per execution (continue-as-new after each) until
    ``stop``; returns everything in the order taken."""
    item = await ctx.dequeue_event("jobs")
    if item == "stop":
        return seen
    await ctx.sleep(0.05)  # events keep arriving meanwhile: buffered, then carried over
    ctx.continue_as_new([*seen, item])


@app.orchestration
async def pinger(ctx: OrchestrationContext, targets: list[str]) -> int:
    """Raises ``ping`` to every target, then waits for one ``pong`` from each."""
    for target in targets:
        ctx.raise_event(target, "ping", ctx.instance_id)
    for _ in targets:
        await ctx.wait_for_event("pong")
    return len(targets)


@app.orchestration
async def ponger(ctx: OrchestrationContext) -> str:
    sender: str = await ctx.wait_for_event("ping")
    ctx.raise_event(sender, "pong", ctx.instance_id)
    return sender


@app.orchestration
async def looper(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    """Sleeps in a loop; continues as new when suggested unless ``obey`` is false."""
    n = int(args.get("n", 0))
    while True:
        if ctx.continue_as_new_suggested and args.get("obey"):
            ctx.set_value("continued", n)
            ctx.continue_as_new({**args, "n": n})
        if n >= args.get("stop", 10**9):
            return n
        await ctx.sleep(0.001)
        n += 1


@app.orchestration
async def reporter(ctx: OrchestrationContext, n: int) -> int:
    """Each step: the activity appends, then the orchestration does."""
    for step in range(n):
        await ctx.call_activity(report, step)
        ctx.append_stream({"step": step})
    return n
