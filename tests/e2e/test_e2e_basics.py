"""End to end, without sessions: real Redis, real worker processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.errors import (
    InstanceExistsError,
    InvalidIdError,
    OrchestrationCancelledError,
    OrchestrationFailedError,
    WaitTimeoutError,
)
from durable_redis.storage.base import ExistingInstancePolicy, InstanceStatus
from tests.e2e.e2e_helpers import WorkerPool, eventually, markers

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(90)]


async def test_activity_and_typed_result(workers: WorkerPool, client: Client) -> None:
    from tests.e2e import e2e_app

    w = workers.start()
    iid = await client.start(e2e_app.hello, "world", instance_id="hello-1")
    assert iid == "hello-1"
    result = await client.wait_for_completion(iid, timeout=30)
    assert result == f"hello world from {w.pid}"
    state = await client.get_status(iid)
    assert state is not None
    assert state.status is InstanceStatus.COMPLETED
    assert state.output == result and state.error is None
    assert state.completed_at is not None and state.created_at <= state.completed_at
    history = await client.get_history(iid)
    kinds = [type(e).__name__ for e in history]
    assert kinds[0] == "OrchestrationStarted" and kinds[-1] == "OrchestrationCompleted"
    assert "ActivityScheduled" in kinds and "ActivityCompleted" in kinds


async def test_start_policies_and_id_validation(workers: WorkerPool, client: Client) -> None:
    from tests.e2e import e2e_app

    workers.start()
    await client.start(e2e_app.hello, "a", instance_id="dup")
    with pytest.raises(InstanceExistsError):
        await client.start(e2e_app.hello, "b", instance_id="dup")
    assert (
        await client.start(
            e2e_app.hello, "c", instance_id="dup", if_exists=ExistingInstancePolicy.IGNORE
        )
        == "dup"
    )
    assert await client.wait_for_completion("dup", timeout=30) == (
        (await client.get_status("dup")).output  # type: ignore[union-attr]
    )
    for bad in ["", "x" * 257, "a{b", "a}b", "a\nb", "a\0b", "\ud800"]:
        with pytest.raises(InvalidIdError):
            await client.start(e2e_app.hello, "x", instance_id=bad)
    page = await client.list_instances(limit=10)
    assert [i.instance_id for i in page.instances] == ["dup"]
    with pytest.raises(InvalidIdError):
        await client.raise_event("dup", "")


async def test_retries_until_success_and_failure_caught(
    workers: WorkerPool, client: Client, marker_dir: Path
) -> None:
    workers.start()
    ok = await client.start("retries", {"dir": str(marker_dir), "fail_times": 2, "max_attempts": 3})
    assert await client.wait_for_completion(ok, timeout=30) == 3
    caught = await client.start("catches", "boom")
    assert await client.wait_for_completion(caught, timeout=30) == "caught ValueError: boom"


async def test_retries_exhausted_fail_the_orchestration(
    workers: WorkerPool, client: Client, marker_dir: Path
) -> None:
    workers.start()
    iid = await client.start(
        "retries", {"dir": str(marker_dir), "fail_times": 5, "max_attempts": 2}
    )
    with pytest.raises(OrchestrationFailedError) as info:
        await client.wait_for_completion(iid, timeout=30)
    assert "flaky failure 2" in str(info.value)
    assert len(markers(marker_dir, "flaky-")) == 2


async def test_durable_timer(workers: WorkerPool, client: Client) -> None:
    workers.start()
    start = time.monotonic()
    iid = await client.start("timer", 1.0)
    elapsed = await client.wait_for_completion(iid, timeout=30)
    assert elapsed >= 1.0
    assert time.monotonic() - start >= 1.0


async def test_external_event_and_timeout(workers: WorkerPool, client: Client) -> None:
    workers.start()
    iid = await client.start("approval", 60.0)
    await eventually(lambda: _custom(client, iid, "waiting"), message="waiting status")
    await client.raise_event(iid, "approve", {"by": "ann"})
    assert await client.wait_for_completion(iid, timeout=30) == {"by": "ann"}
    late = await client.start("approval", 0.3)
    assert await client.wait_for_completion(late, timeout=30) == "timed out"
    with pytest.raises(WaitTimeoutError):
        await client.wait_for_completion(await client.start("approval", 60.0), timeout=0.3)


async def test_children(workers: WorkerPool, client: Client) -> None:
    workers.start()
    workers.start()
    iid = await client.start("parent", [1, 2, 3, 4])
    assert await client.wait_for_completion(iid, timeout=30) == [2, 4, 6, 8]
    children = await client.store.list_children(iid)
    assert len(children) == 4


async def test_continue_as_new(workers: WorkerPool, client: Client) -> None:
    workers.start()
    iid = await client.start("counter", 0)
    assert await client.wait_for_completion(iid, timeout=30) == 5
    state = await client.get_status(iid)
    assert state is not None and state.execution_id == 6
    first = await client.get_history(iid, execution_id=1)
    assert type(first[-1]).__name__ == "OrchestrationContinuedAsNew"


async def test_cancellation_reaches_children_and_activities(
    workers: WorkerPool, client: Client, marker_dir: Path
) -> None:
    workers.start()
    iid = await client.start("cancellable", {"dir": str(marker_dir)})
    await eventually(
        lambda: len(markers(marker_dir, "started-")) == 2, message="both activities started"
    )
    await client.cancel(iid, "user asked")
    with pytest.raises(OrchestrationCancelledError):
        await client.wait_for_completion(iid, timeout=30)
    children = await client.store.list_children(iid)
    assert len(children) == 1
    child_state = await client.wait_for_state(children[0], timeout=30)
    assert child_state.status is InstanceStatus.CANCELLED
    # Both activities learn of it through their lost leases and are cancelled on the worker.
    await eventually(
        lambda: {m.split("-")[1] for m in markers(marker_dir, "cancelled-")} == {"parent", "child"},
        timeout=15,
        message="both activities cancelled",
    )


async def test_cpu_bound_sync_activity_keeps_its_lease(workers: WorkerPool, client: Client) -> None:
    # lock_timeout 2 s; the activity spins for 5 s in a thread: renewal must keep the lease.
    w = workers.start()
    iid = await client.start("spinner", 5.0)
    assert await client.wait_for_completion(iid, timeout=40) == w.pid
    history = await client.get_history(iid)
    assert sum(type(e).__name__ == "ActivityScheduled" for e in history) == 1


async def test_poison_activity_fails_the_orchestration(
    workers: WorkerPool, client: Client, marker_dir: Path
) -> None:
    iid = await client.start("poison", {"dir": str(marker_dir)})
    # Every delivery kills its worker; after max_attempts deliveries the item is poison.
    deadline = time.monotonic() + 60
    while True:
        state = await client.get_status(iid)
        assert state is not None
        if state.is_terminal:
            break
        assert time.monotonic() < deadline, "poison never detected"
        alive = [w for w in workers.workers if w.alive()]
        if not alive:
            workers.start(max_attempts=2)
        await anyio.sleep(0.2)
    assert state.status is InstanceStatus.FAILED
    assert state.error is not None and "poison" in (state.error.kind + state.error.message)
    assert len(markers(marker_dir, "crash-")) == 2


async def test_unregistered_names_wait_for_a_worker_that_knows_them(
    workers: WorkerPool, client: Client
) -> None:
    partial = workers.start("e2e_partial:app")
    orch = await client.start("only_on_full")
    act = await client.start("hello", "late")
    await anyio.sleep(2.5)
    for iid in (orch, act):
        state = await client.get_status(iid)
        assert state is not None and not state.is_terminal, state
    assert "not registered" in partial.log()
    full = workers.start()
    partial.terminate()
    assert await client.wait_for_completion(orch, timeout=30) == "ok"
    assert await client.wait_for_completion(act, timeout=30) == f"hello late from {full.pid}"


async def test_purge_and_list(workers: WorkerPool, client: Client) -> None:
    workers.start()
    ids = [await client.start("hello", str(i)) for i in range(5)]
    for iid in ids:
        await client.wait_for_completion(iid, timeout=30)
    seen: list[str] = []
    cursor = None
    while True:
        page = await client.list_instances(status="completed", limit=2, cursor=cursor)
        seen += [i.instance_id for i in page.instances]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert await client.purge(ids[0]) == 1
    assert await client.get_status(ids[0]) is None


async def _custom(client: Client, iid: str, expected: Any) -> bool:
    state = await client.get_status(iid)
    return state is not None and state.custom_status == expected
