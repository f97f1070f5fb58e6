"""The app the reliability worker processes serve (``rel_app:app``).

``record`` appends one line per *execution* to ``<dir>/executions.log`` (``O_APPEND``, one
``write``: atomic for short lines on a local file system), so a test can count how often every
activity really ran, across processes that were killed mid-way. Lines are
``<instance> <activity_id> <pid> <unix time>``.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from durable_redis.core import ActivityContext, App, OrchestrationContext

# room for the big-purge test: one execution fans out 50,000 activities (test_big_purge.py)
app = App("rel", max_history_events=120_000)

EXECUTIONS = "executions.log"


def append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.activity
def record(ctx: ActivityContext, args: dict[str, Any]) -> int:
    d = Path(args["dir"])
    append_line(
        d / EXECUTIONS, f"{ctx.instance_id} {ctx.activity_id} {os.getpid()} {time.time():.3f}\n"
    )
    if args.get("sleep"):
        time.sleep(float(args["sleep"]))
    value: int = args["i"]
    return value


@app.activity
def report(ctx: ActivityContext, args: dict[str, Any]) -> None:
    """Append ``<instance> <total>`` to ``<dir>/results.log`` (results outlive retention)."""
    append_line(Path(args["dir"]) / "results.log", f"{ctx.instance_id} {args['total']}\n")


@app.activity
def big_result(ctx: ActivityContext, size: int) -> bytes:
    return b"x" * size


@app.activity
def unencodable_result(ctx: ActivityContext, _: Any = None) -> Any:
    return object()


@app.activity
def crash(ctx: ActivityContext, args: dict[str, Any]) -> None:
    """Kills its worker process, every time (poison)."""
    append_line(Path(args["dir"]) / "crashes.log", f"{os.getpid()} {time.time():.3f}\n")
    os._exit(3)


@app.orchestration
async def fanout(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    """``n`` record activities in waves of ``batch`` (several turns, growing history)."""
    n, batch = int(args["n"]), int(args.get("batch", 10))
    total = 0
    for start in range(0, n, batch):
        calls = [
            ctx.call_activity(record, {"dir": args["dir"], "i": i, "sleep": args.get("sleep", 0)})
            for i in range(start, min(n, start + batch))
        ]
        total += sum(await asyncio.gather(*calls))
    if args.get("report"):
        await ctx.call_activity(report, {"dir": args["dir"], "total": total})
    return total


@app.orchestration
async def poison(ctx: OrchestrationContext, args: dict[str, Any]) -> None:
    await ctx.call_activity(crash, args)


@app.orchestration
async def echo(ctx: OrchestrationContext, value: Any) -> Any:
    return value


@app.orchestration
async def call_big(ctx: OrchestrationContext, size: int) -> str:
    try:
        await ctx.call_activity(big_result, size)
    except Exception as exc:  # TaskFailedError with the original type name
        return f"{type(exc).__name__}: {getattr(exc, 'type_name', '')}"
    return "no error"


@app.orchestration
async def call_unencodable(ctx: OrchestrationContext, _: Any = None) -> str:
    try:
        await ctx.call_activity(unencodable_result)
    except Exception as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'type_name', '')}"
    return "no error"


@app.orchestration
async def big_output(ctx: OrchestrationContext, size: int) -> bytes:
    return b"y" * size


@app.orchestration
async def wait_event(ctx: OrchestrationContext, name: str) -> Any:
    return await ctx.wait_for_event(name)


@app.orchestration
async def on_session(ctx: OrchestrationContext, args: dict[str, Any]) -> str:
    # a lone surrogate cannot travel in an input: build it here
    session = "\udcff" if args.get("surrogate") else args["session"]
    s = await ctx.open_session_with_id(session)
    await ctx.call_activity(record, {"dir": args["dir"], "i": 0}, session=s)
    return s


@app.orchestration
async def call_unknown_activity(ctx: OrchestrationContext, _: Any = None) -> Any:
    return await ctx.call_activity("no_such_activity", 1)


@app.activity
def record_job(ctx: ActivityContext, args: dict[str, Any]) -> dict[str, Any]:
    """A job: one line per execution in ``<dir>/job_executions.log`` (``<job id> <pid> <time>``),
    then a short sleep (so kills catch jobs in flight)."""
    append_line(
        Path(args["dir"]) / "job_executions.log", f"{ctx.job_id} {os.getpid()} {time.time():.3f}\n"
    )
    if args.get("sleep"):
        time.sleep(float(args["sleep"]))
    return {"i": args["i"], "pid": os.getpid()}


@app.activity
def record_tick(ctx: ActivityContext, args: dict[str, Any]) -> None:
    """A scheduled job: one line per execution in ``<dir>/ticks.log`` (``<job id> <pid>``)."""
    append_line(Path(args["dir"]) / "ticks.log", f"{ctx.job_id} {os.getpid()}\n")


@app.orchestration
async def collect_events(ctx: OrchestrationContext, n: int) -> list[Any]:
    """Waits for ``n`` events called ``e`` and returns their payloads in the order applied."""
    return [await ctx.wait_for_event("e") for _ in range(int(n))]


SESSION_STEPS = "session_steps.log"


@app.activity
def session_step(ctx: ActivityContext, args: dict[str, Any]) -> int:
    """One step of a session: ``S|E <session> <instance> <activity id> <pid> <time_ns>`` lines in
    ``<dir>/session_steps.log`` at its start and end (wall clock ns: comparable across the
    processes of one machine), so a test can check no two processes overlap on one session."""
    path = Path(args["dir"]) / SESSION_STEPS
    tag = f"{args['session']} {ctx.instance_id} {ctx.activity_id} {os.getpid()}"
    append_line(path, f"S {tag} {time.time_ns()}\n")
    time.sleep(float(args.get("sleep", 0)))
    append_line(path, f"E {tag} {time.time_ns()}\n")
    value: int = args["i"]
    return value


@app.orchestration
async def session_run(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    """``n`` ``session_step`` activities one after another on one session (then closed)."""
    s = await ctx.open_session_with_id(args["session"])
    total = 0
    for i in range(int(args["n"])):
        step = {"dir": args["dir"], "session": s, "i": i, "sleep": args.get("sleep", 0)}
        total += await ctx.call_activity(session_step, step, session=s)
    await ctx.close_session(s)
    return total


@app.orchestration
async def big_session(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    """``n`` ``session_step`` activities at once on one session (a queue to purge)."""
    s = await ctx.open_session_with_id(args["session"])
    step = {"dir": args["dir"], "session": s, "sleep": args.get("sleep", 0)}
    calls = [ctx.call_activity(session_step, {**step, "i": i}, session=s) for i in range(args["n"])]
    return sum(await asyncio.gather(*calls))


SKEW_ENV = "DURABLE_REDIS_TEST_CLOCK_SKEW_S"


@app.activity
def stamp(ctx: ActivityContext, args: dict[str, Any]) -> None:
    """``<instance> <pid> <due ms> <true now ms> <own clock ms>`` to ``<dir>/stamps.log``: the true
    time corrects this process's skew (set by the clock-skew test's hook)."""
    own = time.time()
    true_now = own - float(os.environ.get(SKEW_ENV) or 0)
    append_line(
        Path(args["dir"]) / "stamps.log",
        f"{ctx.instance_id} {os.getpid()} {args['due']} {true_now * 1000:.0f} {own * 1000:.0f}\n",
    )


@app.orchestration
async def skew_run(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    """Two long activities around a timer, then a stamp of when the timer let it go on."""
    work = {"dir": args["dir"], "sleep": args["sleep"]}
    first = await ctx.call_activity(record, {**work, "i": 1})
    fire_at = ctx.now() + timedelta(milliseconds=int(args["timer_ms"]))
    await ctx.create_timer(fire_at)
    due = int(fire_at.timestamp() * 1000)
    await ctx.call_activity(stamp, {"dir": args["dir"], "due": due})
    second = await ctx.call_activity(record, {**work, "i": 2})
    return first + second
