"""Reset (issue 16): re-run an instance from a point of its history as a new execution, with
real workers in-process on a real Redis (and fakeredis). The CLI and dashboard paths are in
tests/test_cli.py / tests/ops; the real-process story in tests/e2e/test_e2e_deploy.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import anyio
import anyio.abc
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.core import events as ev
from durable_redis.errors import (
    InstanceNotFoundError,
    InstanceRunningError,
    ResetPointError,
    ValidationError,
)
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.base import InstanceStatus
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class _Flaky:
    """Three steps; ``charge`` fails until ``fixed``. Counts the calls of each."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fixed = False
        self.app = App("reset")
        app = self.app

        @app.activity
        def reserve(ctx: ActivityContext, item: str) -> str:
            self.calls["reserve"] += 1
            return f"reserved {item}"

        @app.activity
        def charge(ctx: ActivityContext, item: str) -> str:
            self.calls["charge"] += 1
            if not self.fixed:
                raise RuntimeError("card declined")
            return f"charged {item}"

        @app.activity
        def ship(ctx: ActivityContext, item: str) -> str:
            self.calls["ship"] += 1
            return f"shipped {item}"

        @app.orchestration(name="order")
        async def order(ctx: OrchestrationContext, item: str) -> list[str]:
            return [
                await ctx.call_activity(reserve, item),
                await ctx.call_activity(charge, item),
                await ctx.call_activity(ship, item),
            ]


async def _ended(client: Client, iid: str, execution_id: int = 1) -> Any:
    with anyio.fail_after(20):
        while True:
            state = await client.get_status(iid)
            if (
                state is not None
                and state.execution_id == execution_id
                and state.status in (InstanceStatus.COMPLETED, InstanceStatus.FAILED)
            ):
                return state
            await anyio.sleep(0.02)


async def test_a_failed_instance_resets_before_its_failure_and_keeps_earlier_results(
    store: RedisStore, task_group: anyio.abc.TaskGroup, fast_options: WorkerOptions
) -> None:
    flaky = _Flaky()
    client = Client(store, flaky.app)
    task_group.start_soon(Worker(flaky.app, store, fast_options).run)
    await client.start("order", "book", instance_id="o1")
    failed = await _ended(client, "o1")
    assert failed.status is InstanceStatus.FAILED
    old = await client.get_history("o1")

    flaky.fixed = True  # the fix is deployed
    info = await client.reset("o1", reason="card fixed", by="ops")
    assert (info.from_execution, info.execution_id) == (1, 2)
    assert await client.wait_for_completion("o1", timeout=20) == [
        "reserved book",
        "charged book",
        "shipped book",
    ]
    assert flaky.calls == {"reserve": 1, "charge": 2, "ship": 1}  # reserve kept, not re-run

    new = await client.get_history("o1")
    reset = new[info.from_event]
    assert isinstance(reset, ev.ExecutionReset)
    assert (reset.from_execution, reset.from_event, reset.reason, reset.by) == (
        1,
        info.from_event,
        "card fixed",
        "ops",
    )
    assert new[1 : info.from_event] == old[1 : info.from_event]  # the kept prefix
    assert isinstance(new[0], ev.OrchestrationStarted) and new[0].execution_id == 2
    # the old execution stays readable, as it was
    assert await client.get_history("o1", execution_id=1) == old
    assert isinstance(old[-1], ev.OrchestrationFailed)


async def test_reset_to_the_start_reruns_a_completed_instance(
    store: RedisStore, task_group: anyio.abc.TaskGroup, fast_options: WorkerOptions
) -> None:
    flaky = _Flaky()
    flaky.fixed = True
    client = Client(store, flaky.app)
    task_group.start_soon(Worker(flaky.app, store, fast_options).run)
    await client.start("order", "pen", instance_id="o2")
    assert (await _ended(client, "o2")).status is InstanceStatus.COMPLETED
    info = await client.reset("o2", 1, reason="re-run")
    assert info.from_event == 1
    assert (await _ended(client, "o2", execution_id=2)).status is InstanceStatus.COMPLETED
    assert flaky.calls == {"reserve": 2, "charge": 2, "ship": 2}


async def test_reset_refuses_a_running_instance_and_bad_points_changing_nothing(
    store: RedisStore, task_group: anyio.abc.TaskGroup, fast_options: WorkerOptions
) -> None:
    app = App("reset-wait")

    @app.activity
    def step(ctx: ActivityContext) -> str:
        return "done"

    @app.orchestration(name="waits")
    async def waits(ctx: OrchestrationContext) -> str:
        await ctx.call_activity(step)
        return str(await ctx.wait_for_event("go"))

    client = Client(store, app)
    task_group.start_soon(Worker(app, store, fast_options).run)
    await client.start("waits", instance_id="w1")
    with anyio.fail_after(20):
        while not any(isinstance(e, ev.ActivityCompleted) for e in await client.get_history("w1")):
            await anyio.sleep(0.02)
    before = await client.get_history("w1")
    with pytest.raises(InstanceRunningError, match="not held"):
        await client.reset("w1", reason="oops")
    with pytest.raises(InstanceNotFoundError):
        await client.reset("nope")
    await client.raise_event("w1", "go", 7)
    assert await client.wait_for_completion("w1", timeout=20) == "7"
    ended = await client.get_history("w1")
    assert ended[: len(before)] == before
    # event 2 (the activity scheduled, not completed) has work in flight
    with pytest.raises(ResetPointError, match=r"in flight.*valid points: 1, 3"):
        await client.reset("w1", 2)
    with pytest.raises(ResetPointError, match="unknown reset point"):
        await client.reset("w1", "yesterday")
    with pytest.raises(ResetPointError):
        await client.reset("w1", len(ended))  # the terminal event itself
    with pytest.raises(ValidationError, match="reason"):
        await client.reset("w1", 1, reason="x" * 5000)
    state = await client.get_status("w1")
    assert state is not None and state.execution_id == 1
    assert state.status is InstanceStatus.COMPLETED
    assert await client.get_history("w1") == ended

    # last-turn: the latest point (after the event arrived): the code returns again
    info = await client.reset("w1", "last-turn", reason="again")
    assert info.from_event == len(ended) - 1 and info.reapplied_events == 0
    assert (await _ended(client, "w1", execution_id=2)).status is InstanceStatus.COMPLETED

    # before the event: it is delivered again (it was consumed by the execution replaced) ...
    info = await client.reset("w1", 3)
    assert (info.execution_id, info.reapplied_events) == (3, 1)
    assert (await _ended(client, "w1", execution_id=3)).status is InstanceStatus.COMPLETED
    assert await client.wait_for_completion("w1", timeout=20) == "7"
    # ... unless told not to: then the code waits for it again
    info = await client.reset("w1", 3, reapply_events=False)
    assert (info.execution_id, info.reapplied_events) == (4, 0)
    with anyio.fail_after(20):
        while not any(isinstance(e, ev.EventSubscribed) for e in await client.get_history("w1")):
            await anyio.sleep(0.02)
    state = await client.get_status("w1")
    assert state is not None and state.status is InstanceStatus.RUNNING
    await client.raise_event("w1", "go", 8)
    assert await client.wait_for_completion("w1", timeout=20) == "8"


async def test_a_reset_instance_keeps_using_the_sessions_open_at_its_point(
    store: RedisStore, task_group: anyio.abc.TaskGroup, fast_options: WorkerOptions
) -> None:
    app = App("reset-sessions")
    state = {"fixed": False}

    @app.activity
    def load(ctx: ActivityContext) -> str:
        return f"loaded on {ctx.session_id}"

    @app.activity
    def use(ctx: ActivityContext) -> str:
        if not state["fixed"]:
            raise RuntimeError("model crashed")
        return f"used on {ctx.session_id}"

    @app.orchestration(name="with_session")
    async def with_session(ctx: OrchestrationContext) -> list[str]:
        session = await ctx.open_session_with_id("gpu")
        loaded = await ctx.call_activity(load, session=session)
        return [loaded, await ctx.call_activity(use, session=session)]

    client = Client(store, app)
    task_group.start_soon(Worker(app, store, fast_options).run)
    await client.start("with_session", instance_id="s1")
    assert (await _ended(client, "s1")).status is InstanceStatus.FAILED  # sessions purged
    state["fixed"] = True
    await client.reset("s1", reason="model fixed")
    assert await client.wait_for_completion("s1", timeout=20) == ["loaded on gpu", "used on gpu"]


async def test_a_reset_parent_starts_its_child_again_under_a_new_id(
    store: RedisStore, task_group: anyio.abc.TaskGroup, fast_options: WorkerOptions
) -> None:
    app = App("reset-children")
    state = {"fixed": False}

    @app.activity
    def work(ctx: ActivityContext, n: int) -> int:
        if not state["fixed"]:
            raise RuntimeError("not yet")
        return n * 10

    @app.orchestration(name="child")
    async def child(ctx: OrchestrationContext, n: int) -> int:
        return int(await ctx.call_activity(work, n))

    @app.orchestration(name="parent")
    async def parent(ctx: OrchestrationContext) -> list[int]:
        await ctx.wait_for_event("go")
        return list(await asyncio.gather(*(ctx.call_sub_orchestration(child, n) for n in (1, 2))))

    client = Client(store, app)
    task_group.start_soon(Worker(app, store, fast_options).run)
    await client.start("parent", instance_id="p")
    await client.raise_event("p", "go")
    assert (await _ended(client, "p")).status is InstanceStatus.FAILED
    first = [e.instance_id for e in await client.get_history("p") if hasattr(e, "instance_id")]
    assert first == ["p", "p:sub:4", "p:sub:5"]
    state["fixed"] = True
    await client.reset("p", reason="children fixed")  # before the children failed
    assert await client.wait_for_completion("p", timeout=20) == [10, 20]
    again = [e.instance_id for e in await client.get_history("p") if hasattr(e, "instance_id")]
    assert again == ["p", "p:sub:2.5", "p:sub:2.6"]  # not the failed children's ids
    for old in ("p:sub:4", "p:sub:5"):  # the old children are still there, as they ended
        old_state = await client.get_status(old)  # (one failed, the other was cancelled)
        assert old_state is not None and old_state.status.is_terminal
