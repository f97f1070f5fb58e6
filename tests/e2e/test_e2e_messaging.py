"""Talking to running orchestrations with real worker processes (docs/messaging.md): updates
(with a worker SIGKILLed between an update's receipt and its reply), key-value state, FIFO
queues across continue-as-new, events between instances, progress streams, history limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from e2e_helpers import WorkerPool, eventually, markers

from durable_redis.client import Client
from durable_redis.core import events as ev
from durable_redis.errors import (
    InstanceTerminalError,
    OrchestrationFailedError,
    UpdateFailedError,
    UpdateRejectedError,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(120)]

APP = "e2e_messaging_app:app"


@pytest.fixture
async def mclient(e2e_redis_url: str, namespace: str) -> AsyncIterator[Client]:
    import e2e_messaging_app

    async with Client.from_url(e2e_redis_url, namespace=namespace, app=e2e_messaging_app.app) as c:
        yield c


async def _all_events(client: Client, instance_id: str) -> list[Any]:
    state = await client.get_status(instance_id)
    assert state is not None
    found: list[Any] = []
    for execution in range(1, state.execution_id + 1):
        found += await client.get_history(instance_id, execution)
    return found


async def test_updates_values_and_stream(
    mclient: Client, workers: WorkerPool, marker_dir: Path
) -> None:
    workers.start(APP)
    iid = await mclient.start("order", {"dir": str(marker_dir)}, instance_id="order-1")
    assert await mclient.update(iid, "add", "apple", timeout=30) == 1
    assert await mclient.update(iid, "add", "pear", update_id="u-pear", timeout=30) == 2
    # a retried call with the same update id gets the same answer and applies nothing again
    assert await mclient.update(iid, "add", "pear", update_id="u-pear", timeout=30) == 2
    assert await mclient.update(iid, "total", timeout=30) == 2
    with pytest.raises(UpdateRejectedError, match="non-empty"):
        await mclient.update(iid, "add", "", timeout=30)
    with pytest.raises(UpdateRejectedError, match="no handler"):
        await mclient.update(iid, "nope", timeout=30)
    # state readable without a turn
    assert await mclient.get_value(iid, "items") == ["apple", "pear"]
    assert await mclient.get_values(iid) == {"items": ["apple", "pear"]}
    assert await mclient.get_value(iid, "missing", "dflt") == "dflt"
    history = await mclient.get_history(iid)
    received = [e for e in history if isinstance(e, ev.UpdateReceived)]
    assert [e.update_id for e in received].count("u-pear") == 1
    assert len(received) == 3  # apple, pear, total; the rejected ones left no trace
    # progress stream: read it, and follow it from an offset while the order finishes
    first = [item async for item in mclient.stream(iid, follow=False)]
    assert [i.value for i in first] == [{"added": "apple"}, {"added": "pear"}]
    await mclient.raise_event(iid, "checkout")
    rest = [i.value async for i in mclient.stream(iid, from_offset=first[0].offset)]
    assert rest == [{"added": "pear"}, {"done": 2}]
    assert (await mclient.wait_for_completion(iid, timeout=30)) == {"items": ["apple", "pear"]}
    # updates to a finished instance fail clearly
    with pytest.raises(InstanceTerminalError):
        await mclient.update(iid, "add", "late", timeout=30)
    # the state goes with the instance
    await mclient.purge(iid)
    assert await mclient.get_values(iid) == {}
    assert [i async for i in mclient.stream(iid, follow=False)] == []


async def test_worker_killed_between_receipt_and_reply(
    mclient: Client, workers: WorkerPool, marker_dir: Path
) -> None:
    first = workers.start(APP)
    iid = await mclient.start("order", {"dir": str(marker_dir)}, instance_id="order-kill")
    answers: list[Any] = []

    async def call() -> None:
        answers.append(await mclient.update(iid, "add_slowly", "x", update_id="u-x", timeout=60))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        # the update was received and committed: its handler's activity runs on the worker
        await eventually(lambda: markers(marker_dir, "started-x-"), message="handler started")
        first.kill()
        workers.start(APP)
        (marker_dir / "release-x").touch()
    assert answers == [1]
    assert await mclient.update(iid, "add_slowly", "x", update_id="u-x", timeout=30) == 1
    assert await mclient.get_value(iid, "items") == ["x"]
    history = await mclient.get_history(iid)
    assert sum(isinstance(e, ev.UpdateReceived) for e in history) == 1
    assert sum(isinstance(e, ev.UpdateCompleted) for e in history) == 1
    assert len(markers(marker_dir, "started-x-")) >= 2  # the activity ran again on the new worker


async def test_update_pending_when_the_instance_ends_fails(
    mclient: Client, workers: WorkerPool, marker_dir: Path
) -> None:
    workers.start(APP)
    iid = await mclient.start("order", {"dir": str(marker_dir)}, instance_id="order-end")
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await mclient.update(iid, "add_slowly", "never", timeout=60)
        except UpdateFailedError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await eventually(lambda: markers(marker_dir, "started-never-"), message="handler")
        await mclient.raise_event(iid, "checkout")
    assert len(errors) == 1 and "ended" in str(errors[0])


async def test_queue_fifo_exactly_once_across_continue_as_new(
    mclient: Client, workers: WorkerPool
) -> None:
    iid = await mclient.start("consumer", [], instance_id="consumer-1")
    for n in range(8):  # raised before any worker runs: all wait in the queue
        await mclient.enqueue_event(iid, "jobs", n)
    workers.start(APP)
    await eventually(lambda: _execution_at_least(mclient, iid, 3), timeout=30, message="continues")
    for n in range(8, 12):  # and more while it works through them
        await mclient.enqueue_event(iid, "jobs", n)
    await mclient.enqueue_event(iid, "jobs", "stop")
    assert await mclient.wait_for_completion(iid, timeout=60) == list(range(12))


async def _execution_at_least(client: Client, iid: str, n: int) -> bool:
    state = await client.get_status(iid)
    return state is not None and state.execution_id >= n


async def test_events_between_instances(mclient: Client, workers: WorkerPool) -> None:
    workers.start(APP)
    targets = [f"pong-{n}" for n in range(4)]  # spread over the partitions on the cluster
    for t in targets:
        await mclient.start("ponger", instance_id=t)
    iid = await mclient.start("pinger", targets, instance_id="pinger-1")
    assert await mclient.wait_for_completion(iid, timeout=60) == 4
    for t in targets:
        assert await mclient.wait_for_completion(t, timeout=30) == "pinger-1"
        raised = [e for e in await mclient.get_history(t) if isinstance(e, ev.EventRaised)]
        assert len(raised) == 1  # delivered once
    sent = [e for e in await mclient.get_history(iid) if isinstance(e, ev.EventSent)]
    assert sorted(e.instance_id for e in sent) == targets


async def test_history_limit_and_suggestion(mclient: Client, workers: WorkerPool) -> None:
    workers.start(APP)
    obeys = await mclient.start("looper", {"obey": True, "stop": 40}, instance_id="loop-ok")
    assert await mclient.wait_for_completion(obeys, timeout=60) == 40
    state = await mclient.get_status(obeys)
    assert state is not None and state.execution_id >= 3
    assert await mclient.get_value(obeys, "continued") is not None  # kept across executions
    ignores = await mclient.start("looper", {"obey": False}, instance_id="loop-bad")
    with pytest.raises(OrchestrationFailedError) as info:
        await mclient.wait_for_completion(ignores, timeout=60)
    assert info.value.details.type_name == "HistoryLimitExceededError"
    assert len(await mclient.get_history(ignores)) == 61


async def test_activity_and_orchestration_append_to_the_stream(
    mclient: Client, workers: WorkerPool
) -> None:
    iid = await mclient.start("reporter", 3, instance_id="reporter-1")
    workers.start(APP)
    # follow from the start, before anything is there, until the instance ends
    items = [i async for i in mclient.stream(iid)]
    values = [i.value for i in items]
    assert values == [
        {"activity": 0},
        {"step": 0},
        {"activity": 1},
        {"step": 1},
        {"activity": 2},
        {"step": 2},
    ]
    offsets = [i.offset for i in items]
    assert offsets == sorted(offsets, key=lambda o: tuple(int(x) for x in o.split("-")))
    tail = [i.value async for i in mclient.stream(iid, from_offset=offsets[3], follow=False)]
    assert tail == values[4:]
