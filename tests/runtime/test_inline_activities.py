"""``@app.activity(inline=...)``: where a sync activity runs, the thread pool or the worker's
event loop thread.

Unmarked sync activities are probed in the thread pool and run on the loop once measured fast
(runtime/_speed.py); ``inline=True`` ones run on the loop from the first call (no thread hop),
``inline=False`` ones always in the pool; a call with a timeout still goes to the pool so the
timeout can fire; async ones cannot be marked. The worker runs in the test's own event loop
against the real server and fakeredis.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.errors import RegistrationError
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

app = App("inline_activities")


def _thread() -> int:
    return threading.get_ident()


@app.activity(inline=True)
def on_loop(ctx: ActivityContext, x: int) -> int:
    return _thread()


@app.activity
def in_pool(ctx: ActivityContext, x: int) -> int:
    return _thread()


@app.activity(inline=True)
def failing_inline(ctx: ActivityContext, x: int) -> int:
    raise ValueError(f"bad {x}")


@app.activity
def probed(ctx: ActivityContext, x: int) -> int:
    return _thread()


@app.activity(inline=False)
def never_inline(ctx: ActivityContext, x: int) -> int:
    return _thread()


@app.activity(inline=True)
def streams(ctx: ActivityContext, x: int) -> int:
    ctx.append_stream({"x": x})  # waits for the event loop: cannot work inline
    return _thread()


@app.activity(inline=True)
def runs_a_loop(ctx: ActivityContext, x: int) -> int:
    async def twice() -> int:
        return 2 * x

    coro = twice()
    try:
        return asyncio.run(coro)  # no running loop allowed in its thread
    except RuntimeError:
        coro.close()  # (never started: no "never awaited" warning)
        raise


@app.orchestration
async def off_loop_calls(ctx: OrchestrationContext, n: int) -> list[list[int]]:
    streamed = [await ctx.call_activity(streams, i) for i in range(n)]
    looped = [await ctx.call_activity(runs_a_loop, i) for i in range(n)]
    return [streamed, looped]


@app.orchestration
async def probe_runs(ctx: OrchestrationContext, n: int) -> list[list[int]]:
    fast = [await ctx.call_activity(probed, i) for i in range(n)]
    pool = [await ctx.call_activity(never_inline, i) for i in range(n)]
    return [fast, pool]


@app.orchestration
async def where(ctx: OrchestrationContext, x: int) -> list[object]:
    a = await ctx.call_activity(on_loop, x)
    b = await ctx.call_activity(in_pool, x)
    c = await ctx.call_activity(on_loop, x, timeout=timedelta(seconds=30))
    try:
        await ctx.call_activity(failing_inline, x)
        d = "no error"
    except Exception as exc:
        d = str(exc)
    return [a, b, c, d]


@app.orchestration
async def local_where(ctx: OrchestrationContext, marked: bool) -> list[int]:
    first = await ctx.call_local_activity(on_loop if marked else in_pool, 1)
    second = await ctx.call_local_activity(on_loop if marked else in_pool, 2)
    return [first, second]


OPTIONS = WorkerOptions(
    lock_timeout=2.0,
    renewal_interval=0.5,
    fetch_wait=0.2,
    shutdown_grace_period=1.0,
    janitor_interval=None,
)


async def _completed(
    store: RedisStore, orchestration: Any, arg: object
) -> tuple[Any, Worker, Client, str]:
    """Run ``orchestration(arg)`` to completion on a worker in this event loop: (its output,
    the stopped worker, the client, the instance id)."""
    worker = Worker(app, store, OPTIONS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        client = Client(store, app)
        iid = await client.start(orchestration, arg)
        output = await client.wait_for_completion(iid, timeout=20)
        worker.stop()
    return output, worker, client, iid


async def test_inline_activity_runs_on_the_event_loop_thread(store: RedisStore) -> None:
    loop_thread = _thread()
    (a, b, c, d), _, _, _ = await _completed(store, where, 1)
    assert a == loop_thread  # marked: called on the loop, no thread hop
    assert b != loop_thread  # unmarked sync: the thread pool
    assert c != loop_thread  # marked but with a timeout: the pool, so the timeout can fire
    assert "bad 1" in str(d)  # its exception is the activity's outcome, as in the pool


def test_inline_needs_a_sync_function() -> None:
    other = App("inline_async")

    async def coro(ctx: ActivityContext, x: int) -> int:
        return x

    with pytest.raises(RegistrationError, match="inline= is for sync functions"):
        other.activity(inline=True)(coro)
    with pytest.raises(RegistrationError, match="inline= is for sync functions"):
        other.activity(inline=False)(coro)
    assert other.activity(inline=True)(lambda ctx, x: x) is not None


async def test_inline_job_runs_on_the_event_loop_from_its_first_run(store: RedisStore) -> None:
    """A job's sync activity is probed in the pool first; a marked one is inline at once."""
    loop_thread = _thread()
    worker = Worker(app, store, OPTIONS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        client = Client(store, app)
        first_marked = await (await client.enqueue(on_loop, 1)).result(timeout=20)
        first_unmarked = await (await client.enqueue(in_pool, 1)).result(timeout=20)
        worker.stop()
    assert first_marked == loop_thread
    assert first_unmarked != loop_thread


async def test_local_activities_leave_the_event_loop_unless_marked(store: RedisStore) -> None:
    """A small turn is computed on the event loop; one that runs an unmarked local activity
    is computed in a thread instead (the loop never waits on it); a marked one stays inline."""
    loop_thread = _thread()
    worker = Worker(app, store, OPTIONS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        client = Client(store, app)
        unmarked = await client.start(local_where, False)
        marked = await client.start(local_where, True)
        unmarked_threads = await client.wait_for_completion(unmarked, timeout=20)
        marked_threads = await client.wait_for_completion(marked, timeout=20)
        worker.stop()
    assert loop_thread not in unmarked_threads
    assert marked_threads == [loop_thread, loop_thread]


async def test_a_sync_activity_measured_fast_goes_inline_and_inline_false_never(
    store: RedisStore,
) -> None:
    """Its first 3 calls run in the pool; when all took under 1 ms the rest run on the loop (a
    probe over 1 ms, a descheduled thread on a loaded machine, pins it to the pool instead)."""
    loop_thread = _thread()
    (fast, pool), worker, _, _ = await _completed(store, probe_runs, 6)
    assert loop_thread not in fast[:3]  # the probes: in the pool
    speed = worker._activities._speed["probed"]
    if speed.pinned:
        assert speed.probes < 3 and loop_thread not in fast
    else:
        assert speed.inline and fast[3:] == [loop_thread] * 3
    assert loop_thread not in pool  # inline=False: the pool, however fast


async def test_a_call_that_cannot_run_on_the_loop_is_run_again_in_the_pool(
    store: RedisStore,
) -> None:
    """``append_stream`` and ``asyncio.run`` cannot work on the event loop's thread: an inline
    call of them (here ``inline=True``; a measured-fast activity alike) is run again in the
    pool in the same delivery, and the activity stays there; nothing fails."""
    loop_thread = _thread()
    (streamed, looped), worker, client, iid = await _completed(store, off_loop_calls, 3)
    items = [item.value async for item in client.stream(iid, follow=False)]
    assert loop_thread not in streamed
    assert items == [{"x": 0}, {"x": 1}, {"x": 2}]  # each appended once: the inline try raised
    assert looped == [0, 2, 4]
    for name in ("streams", "runs_a_loop"):
        speed = worker._activities._speed[name]
        assert speed.pinned and not speed.inline
