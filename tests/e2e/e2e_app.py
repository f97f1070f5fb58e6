"""The app the e2e worker processes serve (``e2e_app:app``).

Activities report the pid of the process that ran them, so tests can see where session work
went, and keep per-process in-memory state per session (``count``), the way a session-pinned
application keeps a model or a conversation in memory. ``hold`` blocks until the test writes a
release file, writing marker files as it starts, finishes or is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

from durable_redis.core import ActivityContext, App, OrchestrationContext, RetryPolicy
from durable_redis.errors import TaskFailedError

app = App("e2e", max_sessions_per_orchestration=10)

_session_state: dict[str, int] = {}


# -- activities ----------------------------------------------------------------------------------
@app.activity
def whoami(ctx: ActivityContext, tag: Any = None) -> dict[str, Any]:
    key = f"{ctx.instance_id}/{ctx.session_id}"
    _session_state[key] = _session_state.get(key, 0) + 1
    return {
        "pid": os.getpid(),
        "session": ctx.session_id,
        "count": _session_state[key],
        "worker": ctx.worker_id,
        "tag": tag,
        "key": ctx.idempotency_key,
    }


@app.activity
async def hold(ctx: ActivityContext, args: dict[str, Any]) -> dict[str, Any]:
    """Async: block until ``release-<name>`` exists in ``dir``; marker files on each step."""
    d = Path(args["dir"])
    name = args["name"]
    pid = os.getpid()
    (d / f"started-{name}-{pid}-{time.monotonic_ns()}").touch()
    try:
        while not (d / f"release-{name}").exists():
            await anyio.sleep(0.05)
    except BaseException:
        (d / f"cancelled-{name}-{pid}").touch()
        raise
    (d / f"finished-{name}-{pid}").touch()
    return {"pid": pid, "session": ctx.session_id}


@app.activity
async def hold_progress(ctx: ActivityContext, args: dict[str, Any]) -> int:
    """Report progress, then block until ``release-<name>`` exists in ``dir``."""
    ctx.report_progress({"step": 1, "of": 3})
    while not (Path(args["dir"]) / f"release-{args['name']}").exists():
        await anyio.sleep(0.05)
    return 3


@app.activity
def hold_sync(ctx: ActivityContext, args: dict[str, Any]) -> dict[str, Any]:
    """Sync and stubborn: ignores cancellation until released (a late completion)."""
    d = Path(args["dir"])
    name = args["name"]
    pid = os.getpid()
    (d / f"started-{name}-{pid}-{time.monotonic_ns()}").touch()
    while not (d / f"release-{name}").exists():
        time.sleep(0.05)
    if ctx.is_cancelled:
        (d / f"sawcancel-{name}-{pid}").touch()
    (d / f"finished-{name}-{pid}").touch()
    return {"pid": pid, "session": ctx.session_id}


@app.activity
def spin(ctx: ActivityContext, seconds: float) -> int:
    """CPU-bound (holds the GIL in bursts) for ``seconds``: lease renewal must keep up."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += sum(range(1000))
    return os.getpid()


@app.activity
def flaky(ctx: ActivityContext, args: dict[str, Any]) -> int:
    """Fails until it has been called ``fail_times`` times (counted in files)."""
    d = Path(args["dir"])
    calls = len(list(d.glob("flaky-*"))) + 1
    (d / f"flaky-{calls}").touch()
    if calls <= args["fail_times"]:
        raise ValueError(f"flaky failure {calls}")
    return calls


@app.activity
def always_fails(ctx: ActivityContext, message: str) -> None:
    raise ValueError(message)


@app.activity
async def nap(ctx: ActivityContext, args: dict[str, Any]) -> int:
    """Blocks on its first delivery (on a worker the test kills), naps ``seconds`` on later ones."""
    (Path(args["dir"]) / f"started-nap-{os.getpid()}-{ctx.delivery}-{time.monotonic_ns()}").touch()
    if ctx.delivery == 1:
        await anyio.sleep(3600)
    await anyio.sleep(args["seconds"])
    return os.getpid()


@app.activity
def crash(ctx: ActivityContext, args: dict[str, Any]) -> None:
    """Kills its worker process (poison test)."""
    (Path(args["dir"]) / f"crash-{os.getpid()}-{time.monotonic_ns()}").touch()
    os._exit(3)


# -- orchestrations: basics ----------------------------------------------------------------------
@app.orchestration
async def hello(ctx: OrchestrationContext, name: str) -> str:
    r = await ctx.call_activity(whoami, name)
    return f"hello {name} from {r['pid']}"


@app.orchestration
async def retries(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    policy = RetryPolicy(max_attempts=args["max_attempts"], initial_delay=0.05, max_delay=0.2)
    result: int = await ctx.call_activity(flaky, args, retry=policy)
    return result


@app.orchestration
async def timer(ctx: OrchestrationContext, seconds: float) -> float:
    start = ctx.now()
    await ctx.sleep(timedelta(seconds=seconds))
    return (ctx.now() - start).total_seconds()


@app.orchestration
async def approval(ctx: OrchestrationContext, timeout: float) -> Any:
    ctx.set_custom_status("waiting")
    event = ctx.wait_for_event("approve")
    winner = await ctx.when_any([event, ctx.sleep(timedelta(seconds=timeout))])
    return winner.result() if winner is event else "timed out"


@app.orchestration
async def child_double(ctx: OrchestrationContext, x: int) -> int:
    r = await ctx.call_activity(whoami, x)
    return x * 2 if r["pid"] else -1


@app.orchestration
async def parent(ctx: OrchestrationContext, xs: list[int]) -> list[int]:
    return list(await asyncio.gather(*(ctx.call_sub_orchestration(child_double, x) for x in xs)))


@app.orchestration
async def counter(ctx: OrchestrationContext, n: int) -> int:
    if n < 5:
        await ctx.call_activity(whoami, n)
        ctx.continue_as_new(n + 1)
    return n


@app.orchestration
async def child_hold(ctx: OrchestrationContext, args: dict[str, Any]) -> Any:
    return await ctx.call_activity(hold, args)


@app.orchestration
async def cancellable(ctx: OrchestrationContext, args: dict[str, Any]) -> Any:
    child = ctx.call_sub_orchestration(child_hold, {**args, "name": "child"})
    mine = ctx.call_activity(hold, {**args, "name": "parent"})
    return await asyncio.gather(child, mine)


@app.orchestration
async def poison(ctx: OrchestrationContext, args: dict[str, Any]) -> None:
    await ctx.call_activity(crash, args)


@app.orchestration
async def catches(ctx: OrchestrationContext, message: str) -> str:
    try:
        await ctx.call_activity(always_fails, message)
    except TaskFailedError as exc:
        return f"caught {exc.type_name}: {exc.details.message}"
    return "no error"


@app.orchestration
async def spinner(ctx: OrchestrationContext, seconds: float) -> int:
    pid: int = await ctx.call_activity(spin, seconds)
    return pid


# -- orchestrations: sessions --------------------------------------------------------------------
@app.orchestration
async def session_lifecycle(ctx: OrchestrationContext, _: Any = None) -> dict[str, Any]:
    s1 = await ctx.open_session()
    s1b = await ctx.open_session()
    s2 = await ctx.open_session_with_id("fixed")
    s2b = await ctx.open_session_with_id("fixed")
    await ctx.close_session("never-opened")
    r1 = await ctx.call_activity(whoami, "a", session=s1)
    r2 = await ctx.call_activity(whoami, "b", session=s2)
    plain = await ctx.call_activity(whoami, "plain")
    await ctx.close_session(s1)
    await ctx.close_session(s1)
    await ctx.close_session(s1b)
    return {"s1": s1, "s1b": s1b, "s2": s2, "s2b": s2b, "r1": r1, "r2": r2, "plain": plain}


@app.orchestration
async def affinity(ctx: OrchestrationContext, n: int) -> list[dict[str, Any]]:
    s = await ctx.open_session()
    results = []
    for i in range(n):
        results.append(await ctx.call_activity(whoami, i, session=s))
        if i % 3 == 2:
            await ctx.sleep(timedelta(milliseconds=20))
    return results


@app.orchestration
async def mixed(ctx: OrchestrationContext, n: int) -> dict[str, list[dict[str, Any]]]:
    s = await ctx.open_session()
    pinned = [ctx.call_activity(whoami, f"s{i}", session=s) for i in range(n)]
    plain = [ctx.call_activity(whoami, f"p{i}") for i in range(n)]
    results = await asyncio.gather(*pinned, *plain)
    more = [await ctx.call_activity(whoami, "after", session=s)]
    return {"session": [*results[:n], *more], "plain": list(results[n:])}


@app.orchestration
async def crash_owner(ctx: OrchestrationContext, args: dict[str, Any]) -> list[Any]:
    s = await ctx.open_session()
    first = await ctx.call_activity(whoami, "first", session=s)
    held = await ctx.call_activity(hold, {**args, "name": "x"}, session=s)
    last = await ctx.call_activity(whoami, "last", session=s)
    return [first, held, last]


@app.orchestration
async def two_phase(ctx: OrchestrationContext, _: Any = None) -> list[Any]:
    """Session activity, wait for "go", session activity again."""
    s = await ctx.open_session()
    first = await ctx.call_activity(whoami, "first", session=s)
    ctx.set_custom_status({"phase": "waiting", "session": s})
    await ctx.wait_for_event("go")
    second = await ctx.call_activity(whoami, "second", session=s)
    return [first, second]


@app.orchestration
async def close_inflight(ctx: OrchestrationContext, args: dict[str, Any]) -> dict[str, Any]:
    """Start a session activity, close the session while it runs, then reopen and use it."""
    s = await ctx.open_session_with_id("c")
    activity = args.get("activity", "hold")
    pending = asyncio.ensure_future(
        ctx.call_activity(activity, {**args, "name": "inflight"}, session=s)
    )
    await ctx.wait_for_event("close")
    await ctx.close_session(s)
    ctx.set_custom_status("closed")
    await ctx.wait_for_event("reopen")
    await ctx.open_session_with_id("c")
    after = await ctx.call_activity(whoami, "reopened", session=s)
    return {"after": after, "pending_done": pending.done()}


@app.orchestration
async def can_sessions(ctx: OrchestrationContext, state: dict[str, Any]) -> list[Any]:
    """Continue-as-new three times, using the same session without reopening it."""
    s = state.get("session") or await ctx.open_session()
    results = [*state.get("results", []), await ctx.call_activity(whoami, "r", session=s)]
    await ctx.call_activity(whoami, "plain")  # another turn inside the execution
    results.append(await ctx.call_activity(whoami, "r2", session=s))
    if len(results) < 8:
        if len(results) == 4:
            ctx.set_custom_status({"session": s, "owner": results[-1]["worker"]})
            await ctx.wait_for_event("continue")
        ctx.continue_as_new({"session": s, "results": results})
    return results


@app.orchestration
async def terminal_sessions(ctx: OrchestrationContext, how: str) -> Any:
    s1 = await ctx.open_session()
    s2 = await ctx.open_session_with_id("two")
    r1 = await ctx.call_activity(whoami, 1, session=s1)
    r2 = await ctx.call_activity(whoami, 2, session=s2)
    ctx.set_custom_status({"sessions": [[s1, r1["worker"]], [s2, r2["worker"]]]})
    await ctx.wait_for_event("end")
    if how == "fail":
        raise RuntimeError("failing on purpose")
    if how == "cancel":
        await ctx.wait_for_event("never")
    return "done"


@app.orchestration
async def two_sessions(ctx: OrchestrationContext, rounds: int) -> dict[str, list[Any]]:
    s1 = await ctx.open_session_with_id("one")
    first = await ctx.call_activity(whoami, "one-0", session=s1)
    ctx.set_custom_status("first done")
    await ctx.wait_for_event("go")
    s2 = await ctx.open_session_with_id("two")
    one, two = [first], []
    for i in range(rounds):
        a, b = await asyncio.gather(
            ctx.call_activity(whoami, f"one-{i}", session=s1),
            ctx.call_activity(whoami, f"two-{i}", session=s2),
        )
        one.append(a)
        two.append(b)
        on_one = ctx.call_activity(whoami, f"one-any-{i}", session=s1)
        on_two = ctx.call_activity(whoami, f"two-any-{i}", session=s2)
        winner = await ctx.when_any([on_one, on_two])
        (one if winner is on_one else two).append(winner.result())
    return {"one": one, "two": two}


@app.orchestration
async def session_nap(ctx: OrchestrationContext, args: dict[str, Any]) -> int:
    s = await ctx.open_session()
    pid: int = await ctx.call_activity(nap, args, session=s)
    return pid


@app.orchestration
async def child_uses_parent_session(ctx: OrchestrationContext, session: str) -> Any:
    return await ctx.call_activity(whoami, "child", session=session)


@app.orchestration
async def parent_with_session(ctx: OrchestrationContext, _: Any = None) -> str:
    s = await ctx.open_session()
    await ctx.call_activity(whoami, "parent", session=s)
    try:
        await ctx.call_sub_orchestration(child_uses_parent_session, s)
    except TaskFailedError as exc:
        return f"child failed: {exc.details.message}"
    return "child succeeded"


@app.orchestration
async def cycles(ctx: OrchestrationContext, n: int) -> int:
    for i in range(n):
        s = await ctx.open_session_with_id(f"cycle-{i % 3}")
        await ctx.call_activity(whoami, i, session=s)
        await ctx.close_session(s)
    return n


@app.orchestration
async def only_on_full(ctx: OrchestrationContext, _: Any = None) -> str:
    await ctx.call_activity(whoami, "full")
    return "ok"


# -- local activities (ctx.call_local_activity) --------------------------------------------------
@app.activity
def local_mark(ctx: ActivityContext, args: dict[str, Any]) -> int:
    """Writes one marker file per run (so a test counts the runs); returns the pid."""
    (Path(args["dir"]) / f"local-{args['tag']}-{time.monotonic_ns()}").touch()
    return os.getpid()


@app.activity
async def local_double(ctx: ActivityContext, n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


@app.activity
def local_flaky(ctx: ActivityContext, args: dict[str, Any]) -> int:
    d = Path(args["dir"])
    calls = len(list(d.glob("lflaky-*"))) + 1
    (d / f"lflaky-{calls}").touch()
    if calls <= args["fail_times"]:
        raise ValueError(f"local flaky failure {calls}")
    return calls


@app.orchestration
async def local_steps(ctx: OrchestrationContext, args: dict[str, Any]) -> list[Any]:
    pid = await ctx.call_local_activity(local_mark, {"dir": args["dir"], "tag": "a"})
    doubled = await ctx.call_local_activity(local_double, 21)
    await ctx.wait_for_event("go")
    try:
        await ctx.call_local_activity(always_fails, "local boom")
        caught = ""
    except TaskFailedError as exc:
        caught = f"{type(exc).__name__}:{exc.details.type_name}:{exc.details.message}"
    policy = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.2)
    calls = await ctx.call_local_activity(
        local_flaky, {"dir": args["dir"], "fail_times": 2}, retry=policy
    )
    return [pid, doubled, caught, calls]
