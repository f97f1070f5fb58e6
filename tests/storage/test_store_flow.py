"""Flow control by key in the job scripts (docs/routing.md): a concurrency limit per key held by
the lease (ack, cancel and lease expiry free the slot), a GCRA rate per key that schedules the
key instead of spinning, round-robin fairness between keys, debounce and throttle at enqueue,
and the keyed job living in its key's partition. Run on a real Redis and on fakeredis (and on a
Redis Cluster with P = 8 under ``--cluster -m cluster``)."""

from __future__ import annotations

import time

import anyio
import pytest
from store_support import LOCK, SHORT

from durable_redis.errors import ValidationError
from durable_redis.storage import RedisStore
from durable_redis.storage.insights import job_overview
from durable_redis.storage.job_types import JobAck, JobLease, JobOutcome, JobState, KeptJob, NewJob
from durable_redis.storage.keys import id_in_partition, partition_of

pytestmark = pytest.mark.anyio


def keyed(
    store: RedisStore,
    jid: str,
    key: str,
    flow: str = "- - - 1",
    mode: str = "",
    queue: str = "default",
    **kw: object,
) -> NewJob:
    return NewJob(
        job_id=store.job_id_for_key(jid, key),
        name="send",
        spec=f"spec-{jid}".encode(),
        result_ttl_ms=60_000,
        queue=queue,
        flow_key=key,
        flow=flow,
        flow_mode=mode,
        **kw,  # type: ignore[arg-type]
    )


async def fetch(store: RedisStore, limit: int = 100, lock_ms: int = LOCK) -> list[JobLease]:
    return await store.fetch_jobs("w", limit=limit, lock_ms=lock_ms)


def done(leases: list[JobLease]) -> list[JobAck]:
    return [JobAck(x, JobOutcome.COMPLETED, b"ok") for x in leases]


def base(job_id: str) -> str:
    return job_id.split(":")[0]


async def test_a_key_never_runs_more_than_its_limit(store: RedisStore) -> None:
    jobs = [keyed(store, f"a{i}", "tenant-a", "2 - - 1") for i in range(5)]
    jobs += [keyed(store, f"b{i}", "tenant-b", "1 - - 1") for i in range(3)]
    await store.enqueue_jobs(jobs)
    first = await fetch(store)
    assert sorted(base(x.job_id) for x in first) == ["a0", "a1", "b0"]
    assert await fetch(store) == []  # both keys at their limit: nothing, and no spin:
    assert await store._r.zcard(store._pk("tenant-a").jq_ready) == 0  # out of the round robin
    await store.ack_jobs(done([x for x in first if base(x.job_id) == "a0"]))
    [nxt] = await fetch(store)
    assert base(nxt.job_id) == "a2"  # FIFO within the key
    # a cancelled running job frees its slot too
    b0 = next(x for x in first if base(x.job_id) == "b0")
    assert await store.cancel_job(b0.job_id, b"c") is JobState.RUNNING
    [b1] = await fetch(store)
    assert base(b1.job_id) == "b1"
    # a retry (or hand-back) frees the slot and queues the job again in its key
    await store.ack_jobs([JobAck(b1, JobOutcome.RETRY, b"e", 0)])
    [again] = await fetch(store)
    assert again.job_id == b1.job_id and again.attempt == 2


async def test_an_expired_lease_gives_its_slot_back(store: RedisStore) -> None:
    await store.enqueue_jobs([keyed(store, f"j{i}", "k", "1 - - 1") for i in range(2)])
    [held] = await fetch(store, lock_ms=SHORT)
    assert await fetch(store) == []
    await anyio.sleep(SHORT * 2 / 1000)
    # the expired job is requeued first (FIFO: it is ahead of j1) and its slot is free again
    [lease] = await fetch(store)
    assert lease.job_id == held.job_id and lease.delivery == 2
    assert await store.ack_jobs(done([held])) == [False]  # the old holder's ack is refused
    assert await fetch(store) == []  # still one at a time


def same_partition(store: RedisStore, anchor: str, prefix: str) -> str:
    """A key named ``prefix...`` in ``anchor``'s partition (the turns between keys are
    within a partition; across partitions a fetch rotates the partition it starts at)."""
    n = store.partitions
    return next(
        f"{prefix}{i}"
        for i in range(10_000)
        if partition_of(f"{prefix}{i}", n) == partition_of(anchor, n)
    )


async def test_keys_take_turns_within_one_fetch(store: RedisStore) -> None:
    small = same_partition(store, "big", "small")
    await store.enqueue_jobs([keyed(store, f"big{i}", "big") for i in range(300)])
    await store.enqueue_jobs([keyed(store, "small", small)])
    got = await fetch(store, limit=10)
    assert "small" in [base(x.job_id) for x in got]  # not behind the 300 jobs of "big"


async def test_unkeyed_jobs_and_groups_share_a_queue_by_priority(store: RedisStore) -> None:
    pid = id_in_partition("k", "p", store.partitions)  # one partition: one order
    plain = NewJob(job_id=pid, name="send", spec=b"s", result_ttl_ms=60_000, priority=5)
    await store.enqueue_jobs([keyed(store, "k1", "k"), keyed(store, "k2", "k")])
    await store.enqueue_jobs([plain])
    first = await fetch(store, limit=1)
    assert [x.job_id for x in first] == [pid]  # higher priority first, keyed or not
    rest = await fetch(store)
    assert sorted(base(x.job_id) for x in rest) == ["k1", "k2"]


async def test_a_higher_priority_job_moves_its_key_up(store: RedisStore) -> None:
    await store.enqueue_jobs([keyed(store, "low", "k")])  # the key's entry: priority 0
    pid = id_in_partition("k", "p", store.partitions)  # one partition: one order
    plain = NewJob(job_id=pid, name="send", spec=b"s", result_ttl_ms=60_000, priority=3)
    await store.enqueue_jobs([plain])
    await store.enqueue_jobs([keyed(store, "urgent", "k", priority=5)])
    first = await fetch(store, limit=1)
    assert [base(x.job_id) for x in first] == ["urgent"]  # ahead of the plain priority-3 job
    assert [x.job_id for x in await fetch(store, limit=1)] == [pid]


async def test_a_rate_limited_key_is_scheduled_not_spun(store: RedisStore) -> None:
    # 1 per 400 ms: the first job runs now, the second is due 400 ms later (in the delayed set)
    await store.enqueue_jobs([keyed(store, f"r{i}", "api", "- 1 400 1") for i in range(3)])
    t0 = time.monotonic()
    assert len(await fetch(store)) == 1
    assert await fetch(store) == []
    [info] = [q for q in await store.job_queues() if q.name == "default"]
    assert (info.ready, info.delayed) == (2, 0)  # counted as ready jobs of their queue
    due = await store._r.zscore(store._pk("api").jq_delayed, "\napi")
    assert due is not None  # the key waits as one delayed entry (its marker armed for it)
    got: list[float] = []
    while len(got) < 2 and time.monotonic() - t0 < 5:
        leases = await store.fetch_jobs("w", limit=10, lock_ms=LOCK, wait_ms=2000)
        got += [time.monotonic() - t0] * len(leases)
    assert len(got) == 2
    assert 0.3 < got[0] < 0.9 and 0.7 < got[1] < 1.4, got


async def test_a_burst_lets_that_many_through_at_once(store: RedisStore) -> None:
    await store.enqueue_jobs([keyed(store, f"r{i}", "api", "- 10 60000 3") for i in range(5)])
    assert len(await fetch(store)) == 3
    assert await fetch(store) == []


async def test_throttle_keeps_the_first_job_of_a_window(store: RedisStore) -> None:
    window = "throttle 400"
    [first] = await store.enqueue_jobs([keyed(store, "t1", "k", mode=window)])
    assert first is None
    [second] = await store.enqueue_jobs([keyed(store, "t2", "k", mode=window)])
    t1 = store.job_id_for_key("t1", "k")
    assert second == KeptJob(t1)
    assert await store.get_job(store.job_id_for_key("t2", "k")) is None  # dropped
    await anyio.sleep(0.5)
    [third] = await store.enqueue_jobs([keyed(store, "t3", "k", mode=window)])
    assert third is None  # a new window
    assert sorted(base(x.job_id) for x in await fetch(store)) == ["t1", "t3"]


async def test_debounce_replaces_the_pending_job_and_pushes_its_time(store: RedisStore) -> None:
    quiet = "debounce 300"
    t0 = time.monotonic()
    [a] = await store.enqueue_jobs([keyed(store, "d1", "k", mode=quiet)])
    assert a is None
    for i in range(2, 5):
        await anyio.sleep(0.1)
        [kept] = await store.enqueue_jobs([keyed(store, f"d{i}", "k", mode=quiet)])
        assert kept == KeptJob(store.job_id_for_key("d1", "k"))
    assert await fetch(store) == []
    leases: list[JobLease] = []
    while not leases and time.monotonic() - t0 < 5:
        leases = await store.fetch_jobs("w", limit=10, lock_ms=LOCK, wait_ms=1000)
    elapsed = time.monotonic() - t0
    [lease] = leases
    assert base(lease.job_id) == "d1" and lease.spec == b"spec-d4"  # the last input
    assert elapsed > 0.55  # 0.3 s after the last enqueue (at ~0.3 s), not after the first
    # once it runs, the next enqueue starts a new pending job
    [fresh] = await store.enqueue_jobs([keyed(store, "d5", "k", mode=quiet)])
    assert fresh is None


async def test_a_keyed_job_lives_in_its_keys_partition(store: RedisStore) -> None:
    n = store.partitions
    jid = store.job_id_for_key("order-1", "tenant-9")
    assert partition_of(jid, n) == partition_of("tenant-9", n)
    assert store.job_id_for_key("order-1", "tenant-9") == jid  # deterministic (dedupe works)
    await store.enqueue_jobs([keyed(store, "order-1", "tenant-9")])
    rec = await store.get_job(jid)
    assert rec is not None and rec.state is JobState.QUEUED
    if n > 1:
        home = partition_of("k", n)
        other = next(f"x{i}" for i in range(100) if partition_of(f"x{i}", n) != home)
        bad = NewJob(job_id=other, name="send", spec=b"", flow_key="k")
        with pytest.raises(ValidationError):
            await store.enqueue_jobs([bad])


async def test_queued_keyed_jobs_are_listed_and_counted(store: RedisStore) -> None:
    await store.enqueue_jobs([keyed(store, f"c{i}", "k", "1 - - 1") for i in range(3)])
    await fetch(store)
    queued = await store.list_jobs(state=JobState.QUEUED)
    assert sorted(base(r.job_id) for r in queued) == ["c1", "c2"]
    [info] = [q for q in await store.job_queues() if q.name == "default"]
    assert info.ready == 2
    counts = await store.job_counts()
    assert (counts[JobState.QUEUED], counts[JobState.RUNNING]) == (2, 1)
    overview = await job_overview(store)  # the dashboard's figures
    assert (overview.ready, overview.delayed, overview.running) == (2, 0, 1)
    # cancelling a queued keyed job takes it out of its group
    assert await store.cancel_job(store.job_id_for_key("c1", "k"), b"c") is JobState.QUEUED
    [info] = [q for q in await store.job_queues() if q.name == "default"]
    assert info.ready == 1


async def test_an_idle_key_leaves_nothing_behind(store: RedisStore) -> None:
    pk = store._pk("idle")
    await store.enqueue_jobs(
        [keyed(store, "i1", "idle", "2 5 1000 5"), keyed(store, "i2", "idle", "2 5 1000 5")]
    )
    leases = await fetch(store)
    assert len(leases) == 2
    assert await store._r.hlen(pk.jq_groups) > 0
    await anyio.sleep(0.5)  # the GCRA time (2 starts at 5/s) has passed
    await store.ack_jobs(done(leases))
    assert await store._r.hlen(pk.jq_groups) == 0
    assert not await store._r.exists(pk.jq_group("default", "idle"))
    assert await store._r.zcard(pk.jq_ready) == 0


async def test_a_paused_queue_keeps_keyed_jobs_and_resume_frees_them(store: RedisStore) -> None:
    jobs = [keyed(store, f"g{i}", "k", "1 - - 1", queue="gpu") for i in range(3)]
    await store.enqueue_jobs(jobs)
    [first] = await store.fetch_jobs("w", limit=10, lock_ms=LOCK, queues=("gpu",))
    await store.set_job_queue_paused("gpu", True)
    # its slot frees while paused (a hand-back): nothing is fetched, nothing lost
    await store.ack_jobs([JobAck(first, JobOutcome.HAND_BACK, b"0", 0)])
    assert await store.fetch_jobs("w", limit=10, lock_ms=LOCK, queues=("gpu",)) == []
    [info] = [q for q in await store.job_queues() if q.name == "gpu"]
    assert (info.ready, info.paused) == (3, True)
    await store.set_job_queue_paused("gpu", False)
    got = await store.fetch_jobs("w", limit=10, lock_ms=LOCK, queues=("gpu",))
    assert [x.job_id for x in got] == [first.job_id]  # handed back: first again, one at a time
    assert got[0].delivery == 1  # payload "0" gave the delivery back
