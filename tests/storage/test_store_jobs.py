"""Job queue contract: enqueue (dedupe, policies, delay, priority), batched fetch and ack,
fencing (stale and zombie tokens), lease expiry and redelivery, retries on the Redis clock,
cancel by lock stealing, retry of a failed job, result ttl (0 = keep nothing), progress, and
the completion wait. Run on a real Redis and on fakeredis."""

from __future__ import annotations

import anyio
import pytest

from durable_redis.errors import (
    InvalidIdError,
    JobExistsError,
    JobNotFoundError,
    JobStateError,
)
from durable_redis.storage import RedisStore
from durable_redis.storage.job_types import (
    ExistingJobPolicy,
    JobAck,
    JobLease,
    JobOutcome,
    JobState,
    NewJob,
)
from durable_redis.storage.jobs import ack_args, enqueue_args, parse_ended
from durable_redis.storage.keys import partition_of
from tests.harness import StoreHarness
from tests.storage.store_support import LOCK, SHORT

pytestmark = pytest.mark.anyio

TTL = 60_000


def job(jid: str, *, name: str = "send", ttl: int = TTL, **kw: object) -> NewJob:
    return NewJob(job_id=jid, name=name, spec=f"spec-{jid}".encode(), result_ttl_ms=ttl, **kw)  # type: ignore[arg-type]


async def fetch_all(store: RedisStore, limit: int = 100, lock_ms: int = LOCK) -> list[JobLease]:
    return await store.fetch_jobs("w1", limit=limit, lock_ms=lock_ms)


def together(store: RedisStore, *names: str) -> list[str]:
    """Job ids made of ``names`` that all live in one partition (order is per partition)."""
    if store.partitions == 1:
        return list(names)
    out = []
    for name in names:
        k = 0
        while partition_of(f"{name}~{k}", store.partitions) != 0:
            k += 1
        out.append(f"{name}~{k}")
    return out


def done(lease: JobLease, payload: bytes = b"out") -> JobAck:
    return JobAck(lease, JobOutcome.COMPLETED, payload)


def test_argument_packing_is_pure() -> None:
    args = enqueue_args("e", ExistingJobPolicy.KEEP, [job("a", priority=3, delay_ms=5)])
    assert args == ["e", "keep", "send", 3, 5, "", TTL, "default", "", "", "a", b"spec-a"]
    lease = JobLease("a", "t", "send", b"", 1, 1, 0)
    assert ack_args("e", [JobAck(lease, JobOutcome.RETRY, b"x", -4)]) == [
        "e", "a", "t", "r", b"x", 0,
    ]  # fmt: skip


async def test_enqueue_fetch_ack_in_batches(store: RedisStore) -> None:
    ids = together(store, *[f"j{i}" for i in range(10)])
    flags = await store.enqueue_jobs([job(i) for i in ids])
    assert flags == [None] * 10
    first = await fetch_all(store, limit=4)
    rest = await fetch_all(store)
    assert [x.job_id for x in first + rest] == ids  # FIFO (within a partition)
    assert all(x.delivery == 1 and x.attempt == 1 and x.name == "send" for x in first + rest)
    assert first[0].spec == f"spec-{ids[0]}".encode()
    assert await fetch_all(store) == []  # invisible while leased
    assert await store.ack_jobs([done(x, x.job_id.encode()) for x in first + rest]) == [True] * 10
    rec = await store.get_job(ids[3])
    assert rec is not None and rec.state is JobState.COMPLETED and rec.output == ids[3].encode()
    assert rec.finished_at_ms is not None and rec.started_at_ms is not None


async def test_one_round_trip_per_partition_batch(
    store: RedisStore, store_harness: StoreHarness
) -> None:
    calls = store_harness.script_calls
    calls.clear()
    await store.enqueue_jobs([job(f"b{i}") for i in range(50)])
    names = [c[0] for c in calls]
    assert set(names) == {"enqueue_jobs"} and len(names) <= store.partitions


async def test_dedupe_by_job_id_and_policies(store: RedisStore) -> None:
    assert await store.enqueue_jobs([job("d1")]) == [None]
    assert await store.enqueue_jobs([job("d1")]) == [JobState.QUEUED]  # dedupe, still one job
    [lease] = await fetch_all(store)
    assert await store.enqueue_jobs([job("d1")]) == [JobState.RUNNING]
    assert await store.ack_jobs([done(lease)]) == [True]
    assert await store.enqueue_jobs([job("d1")]) == [JobState.COMPLETED]  # keep: not re-run
    assert await fetch_all(store) == []
    with pytest.raises(JobExistsError):
        await store.enqueue_jobs([job("d2"), job("d1")], policy=ExistingJobPolicy.FAIL)
    assert await store.get_job("d2") is None  # nothing written
    assert await store.enqueue_jobs([job("d1")], policy=ExistingJobPolicy.REPLACE) == [None]
    [again] = await fetch_all(store)
    assert again.job_id == "d1" and again.delivery == 1


async def test_priority_then_fifo(store: RedisStore) -> None:
    low, a, high, b = together(store, "low", "a", "high", "b")  # priority is per partition
    await store.enqueue_jobs([job(low, priority=-1), job(a), job(high, priority=5), job(b)])
    got = [x.job_id for x in await fetch_all(store)]
    assert got == [high, a, b, low]


async def test_delay_and_at_use_the_redis_clock(store: RedisStore) -> None:
    now = await store.server_time_ms()
    await store.enqueue_jobs([job("later", delay_ms=250), job("at", at_ms=now + 250)])
    assert await fetch_all(store) == []
    rec = await store.get_job("later")
    assert rec is not None and rec.state is JobState.QUEUED
    got = await store.fetch_jobs("w1", limit=10, lock_ms=LOCK, wait_ms=3000)
    while len(got) < 2:
        got += await store.fetch_jobs("w1", limit=10, lock_ms=LOCK, wait_ms=3000)
    assert sorted(x.job_id for x in got) == ["at", "later"]
    assert await store.server_time_ms() >= now + 250


async def test_stale_token_is_refused_and_expired_lease_redelivers(store: RedisStore) -> None:
    await store.enqueue_jobs([job("z")])
    [zombie] = await fetch_all(store, lock_ms=SHORT)
    await anyio.sleep(SHORT / 1000 + 0.05)
    assert await store.renew_jobs([zombie], LOCK) == ["z"]  # expired: lost
    [fresh] = await fetch_all(store)
    assert fresh.delivery == 2 and fresh.token != zombie.token
    assert await store.ack_jobs([done(zombie, b"zombie")]) == [False]  # the zombie's late ack
    assert await store.ack_jobs([done(fresh, b"ok")]) == [True]
    assert await store.ack_jobs([done(fresh, b"ok")]) == [True]  # a repeated ack: no change
    assert await store.ack_jobs([done(zombie, b"zombie")]) == [False]
    rec = await store.get_job("z")
    assert rec is not None and rec.output == b"ok" and rec.state is JobState.COMPLETED


async def test_renewal_keeps_the_lease_and_stores_progress(store: RedisStore) -> None:
    # 4 x lease / 3 pass in all: the lease outlives its first deadline only by being renewed.
    # Not SHORT: a renewal has lease / 3 of slack (a first script call on fakeredis compiles
    # its Lua, a loaded machine stalls), and 50 ms of it was too little (a CI run lost it).
    lease_ms = 600
    await store.enqueue_jobs([job("p")])
    [lease] = await fetch_all(store, lock_ms=lease_ms)
    for _ in range(3):
        await anyio.sleep(lease_ms / 3000)
        assert await store.renew_jobs([lease], lease_ms, [b"50%"]) == []
    await anyio.sleep(lease_ms / 3000)
    assert await fetch_all(store) == []
    rec = await store.get_job("p")
    assert rec is not None and rec.progress == b"50%" and rec.state is JobState.RUNNING


async def test_retry_goes_through_a_durable_timer(store: RedisStore) -> None:
    await store.enqueue_jobs([job("r")])
    [lease] = await fetch_all(store)
    assert await store.ack_jobs([JobAck(lease, JobOutcome.RETRY, b"boom", 200)]) == [True]
    rec = await store.get_job("r")
    assert rec is not None and rec.state is JobState.QUEUED and rec.error == b"boom"
    assert await fetch_all(store) == []
    [second] = await store.fetch_jobs("w1", limit=1, lock_ms=LOCK, wait_ms=3000)
    assert second.attempt == 2 and second.delivery == 1
    assert await store.ack_jobs([JobAck(second, JobOutcome.FAILED, b"final")]) == [True]
    rec = await store.get_job("r")
    assert rec is not None and rec.state is JobState.FAILED and rec.error == b"final"


async def test_hand_back_can_give_the_delivery_back(store: RedisStore) -> None:
    await store.enqueue_jobs([job("h")])
    [lease] = await fetch_all(store)
    assert await store.ack_jobs([JobAck(lease, JobOutcome.HAND_BACK, b"0")]) == [True]
    [again] = await fetch_all(store)
    assert again.delivery == 1


async def test_cancel_queued_and_running_jobs(store: RedisStore) -> None:
    await store.enqueue_jobs([job("run")])
    [running] = await fetch_all(store, limit=2)
    assert await store.cancel_job(running.job_id, b"why") is JobState.RUNNING
    assert await store.renew_jobs([running], LOCK) == [running.job_id]  # lock stolen
    assert await store.ack_jobs([done(running)]) == [False]  # late completion refused
    rec = await store.get_job(running.job_id)
    assert rec is not None and rec.state is JobState.CANCELLED and rec.error == b"why"
    assert await store.cancel_job(running.job_id, b"again") is JobState.CANCELLED  # no-op
    with pytest.raises(JobNotFoundError):
        await store.cancel_job("nope", b"")
    await store.enqueue_jobs([job("queued-only")])
    assert await store.cancel_job("queued-only", b"x") is JobState.QUEUED
    assert await fetch_all(store) == []


async def test_retry_job_requeues_failed_only(store: RedisStore) -> None:
    await store.enqueue_jobs([job("f")])
    [lease] = await fetch_all(store)
    with pytest.raises(JobStateError):
        await store.retry_job("f")
    await store.ack_jobs([JobAck(lease, JobOutcome.FAILED, b"err")])
    await store.retry_job("f")
    rec = await store.get_job("f")
    assert rec is not None and rec.state is JobState.QUEUED and rec.error is None
    [again] = await fetch_all(store)
    assert again.delivery == 1 and again.attempt == 1
    with pytest.raises(JobNotFoundError):
        await store.retry_job("missing")


async def test_result_ttl_then_removed_and_zero_keeps_nothing(store: RedisStore) -> None:
    await store.enqueue_jobs([job("keep", ttl=200), job("none", ttl=0)])
    leases = await fetch_all(store)
    await store.ack_jobs([done(x) for x in leases])
    assert await store.get_job("none") is None
    assert await store.get_job("keep") is not None
    await anyio.sleep(0.3)
    await fetch_all(store)  # any fetch (idle workers fetch every fetch_wait) sweeps
    assert await store.get_job("keep") is None
    r = store._redis
    for pk in store._parts:
        assert await r.exists(pk.jq_jobs, pk.jq_done, pk.jq_leases, pk.jq_ready) == 0


async def test_list_jobs_by_state_and_name(store: RedisStore) -> None:
    l1, l2, l3 = together(store, "l1", "l2", "l3")
    for jid, name in ((l1, "send"), (l2, "other"), (l3, "send")):
        await store.enqueue_jobs([job(jid, name=name)])
    [first] = await fetch_all(store, limit=1)
    await store.ack_jobs([done(first)])
    assert [r.job_id for r in await store.list_jobs()] == [l1, l2, l3]
    assert [r.job_id for r in await store.list_jobs(state=JobState.QUEUED)] == [l2, l3]
    assert [r.job_id for r in await store.list_jobs(state=JobState.COMPLETED)] == [l1]
    assert [r.job_id for r in await store.list_jobs(name="other")] == [l2]


async def test_wait_job_ended_wakes_on_completion(store: RedisStore) -> None:
    await store.enqueue_jobs([job("w")])
    waited: list[object] = []

    async def waiter() -> None:
        waited.append(await store.wait_job_ended("w", 10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        [lease] = await store.fetch_jobs("w1", limit=1, lock_ms=LOCK, wait_ms=1000)
        await anyio.sleep(0.05)
        t0 = anyio.current_time()
        await store.ack_jobs([done(lease)])
    rec = waited[0]
    assert rec is not None and rec.state is JobState.COMPLETED  # type: ignore[attr-defined]
    assert anyio.current_time() - t0 < 0.9  # woken by the channel, not the 1 s re-check
    assert await store.wait_job_ended("unknown", 0.1) is None


async def test_bad_ids_are_refused_before_anything_is_written(store: RedisStore) -> None:
    with pytest.raises(InvalidIdError):
        await store.enqueue_jobs([job("ok"), job("bad\nid")])
    assert await store.get_job("ok") is None


def test_completion_message_parsing() -> None:
    message = b"a\n5\ncompleted\n3\nxyzb\n6\nfailed\n-1\nc\n7\ncancelled\n0\n"
    assert parse_ended(message) == [
        ("a", "5", JobState.COMPLETED, b"xyz"),
        ("b", "6", JobState.FAILED, None),
        ("c", "7", JobState.CANCELLED, b""),
    ]


async def test_wait_uses_the_message_of_this_incarnation_only(
    store: RedisStore, store_harness: StoreHarness
) -> None:
    if store_harness.backend == "cluster":
        pytest.skip("not applicable: cluster waits poll (no completion channel)")
    await store.wait_job_ended("warm", 0.01)  # the listener is up from here on
    await store.enqueue_jobs([job("inc")])
    [lease] = await fetch_all(store)
    await store.ack_jobs([done(lease, b"first")])
    rec = await store.wait_job_ended("inc", 5)
    assert rec is not None and rec.output == b"first"
    # the id re-created: the old completion message must not answer for the new job
    await store.enqueue_jobs([job("inc")], policy=ExistingJobPolicy.REPLACE)
    rec = await store.wait_job_ended("inc", 0.3)
    assert rec is not None and rec.state is JobState.QUEUED
