"""Job queues (worker pools) and pause/resume in the job scripts: a fetch takes only the
queues it serves, a job keeps its queue through delay, retry, hand-back and lease expiry, one
blocking wait covers every queue, a paused queue keeps its jobs and resuming wakes the workers.
Run on a real Redis and on fakeredis."""

from __future__ import annotations

import time

import anyio
import pytest

from durable_redis.errors import InvalidIdError
from durable_redis.storage import RedisStore
from durable_redis.storage.job_types import JobAck, JobOutcome, JobState, NewJob
from tests.harness import StoreHarness
from tests.storage.store_support import LOCK, SHORT

pytestmark = pytest.mark.anyio


def job(jid: str, queue: str = "default", **kw: object) -> NewJob:
    return NewJob(job_id=jid, name="send", spec=b"s", result_ttl_ms=60_000, queue=queue, **kw)  # type: ignore[arg-type]


async def ids(store: RedisStore, *queues: str, lock_ms: int = LOCK) -> set[str]:
    got = await store.fetch_jobs("w", limit=100, lock_ms=lock_ms, queues=queues)
    return {lease.job_id for lease in got}


async def test_a_fetch_takes_only_the_queues_it_serves(store: RedisStore) -> None:
    await store.enqueue_jobs([job("d1"), job("g1", "gpu"), job("g2", "gpu"), job("c1", "cpu")])
    assert await ids(store, "default") == {"d1"}
    assert await ids(store, "cpu", "default") == {"c1"}
    assert await ids(store, "default", "cpu") == set()
    assert await ids(store, "gpu") == {"g1", "g2"}
    rec = await store.get_job("g1")
    assert rec is not None and rec.state is JobState.RUNNING


async def test_a_job_keeps_its_queue_through_expiry_retry_and_delay(store: RedisStore) -> None:
    await store.enqueue_jobs([job("g1", "gpu"), job("g2", "gpu", delay_ms=SHORT)])
    [lease] = await store.fetch_jobs("w", limit=5, lock_ms=SHORT, queues=("gpu",))
    assert lease.job_id == "g1"
    await anyio.sleep(SHORT * 2 / 1000)
    assert await ids(store, "default") == set()  # the expired lease went back to gpu
    got = await store.fetch_jobs("w", limit=5, lock_ms=LOCK, queues=("gpu",))
    assert {x.job_id for x in got} == {"g1", "g2"}  # g2: the delayed one, promoted in gpu
    acks = [JobAck(x, JobOutcome.RETRY, b"e", 0) for x in got]
    assert await store.ack_jobs(acks) == [True, True]
    assert await ids(store, "default") == set()
    again = await store.fetch_jobs("w", limit=5, lock_ms=LOCK, queues=("gpu",))
    await store.ack_jobs([JobAck(x, JobOutcome.FAILED, b"e") for x in again])
    await store.retry_job("g1")
    assert await ids(store, "default") == set()
    assert await ids(store, "gpu") == {"g1"}


async def test_cancel_removes_a_queued_job_from_its_queue(store: RedisStore) -> None:
    await store.enqueue_jobs([job("g1", "gpu")])
    assert await store.cancel_job("g1", b"c") is JobState.QUEUED
    assert await ids(store, "gpu") == set()
    [info] = [q for q in await store.job_queues() if q.name == "gpu"]
    assert (info.ready, info.delayed) == (0, 0)


async def test_one_wait_covers_every_queue(store: RedisStore, store_harness: StoreHarness) -> None:
    other = await store_harness.twin()
    got: list[str] = []

    async def wait() -> None:
        leases = await store.fetch_jobs("w", limit=5, lock_ms=LOCK, wait_ms=5000, queues=("a", "b"))
        got.extend(x.job_id for x in leases)

    t0 = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.2)
        await other.enqueue_jobs([job("x", "default")])  # not served: does not end the wait
        await other.enqueue_jobs([job("b1", "b")])
    assert got == ["b1"]
    assert time.monotonic() - t0 < 4.0


async def test_a_paused_queue_keeps_its_jobs_and_resume_wakes_the_workers(
    store: RedisStore,
    store_harness: StoreHarness,
) -> None:
    await store.enqueue_jobs([job("g1", "gpu")])
    [running] = await store.fetch_jobs("w", limit=1, lock_ms=LOCK, queues=("gpu",))
    assert await store.set_job_queue_paused("gpu", True) is False
    assert await store.set_job_queue_paused("gpu", True) is True  # already paused
    await store.enqueue_jobs([job("g2", "gpu"), job("g3", "gpu", delay_ms=1), job("d1")])
    await anyio.sleep(0.01)
    assert await ids(store, "gpu", "default") == {"d1"}  # the other queue is served
    assert await store.ack_jobs([JobAck(running, JobOutcome.RETRY, b"e", 0)]) == [True]
    [gpu] = [q for q in await store.job_queues() if q.name == "gpu"]
    assert gpu.paused and gpu.ready + gpu.delayed == 3
    queued = await store.list_jobs(state=JobState.QUEUED)
    assert {r.job_id for r in queued} == {"g1", "g2", "g3"}
    assert (await store.job_counts())[JobState.QUEUED] == 3

    other = await store_harness.twin()
    got: list[str] = []

    async def wait() -> None:
        leases = await store.fetch_jobs("w", limit=5, lock_ms=LOCK, wait_ms=5000, queues=("gpu",))
        got.extend(x.job_id for x in leases)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.2)
        assert got == []
        assert await other.set_job_queue_paused("gpu", False) is True
    # resume goes partition by partition: the woken fetch may see only the first ones
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        await wait()
    assert sorted(got) == ["g1", "g2", "g3"]
    [gpu] = [q for q in await store.job_queues() if q.name == "gpu"]
    assert not gpu.paused and gpu.ready == 0


async def test_a_bad_queue_name_is_refused_and_writes_nothing(store: RedisStore) -> None:
    for bad in ("", "a b", "x" * 65, "gpu\n", "a:b"):
        with pytest.raises(InvalidIdError):
            await store.enqueue_jobs([job("j1"), job("j2", bad)])
        with pytest.raises(InvalidIdError):
            await store.fetch_jobs("w", limit=1, lock_ms=LOCK, queues=(bad,))
        with pytest.raises(InvalidIdError):
            await store.set_job_queue_paused(bad, True)
    assert await store.get_job("j1") is None
    assert [q.name for q in await store.job_queues()] == ["default"]


async def test_the_overview_counts_every_queue(store: RedisStore) -> None:
    from durable_redis.storage.insights import job_overview

    await store.enqueue_jobs([job("d1"), job("g1", "gpu"), job("g2", "gpu", delay_ms=60_000)])
    await store.enqueue_jobs([job("c1", "cpu")])
    await store.fetch_jobs("w", limit=5, lock_ms=LOCK, queues=("cpu",))
    seen = await job_overview(store)
    assert (seen.ready, seen.delayed, seen.running) == (2, 1, 1)
    assert (await store.job_counts())[JobState.QUEUED] == 3
