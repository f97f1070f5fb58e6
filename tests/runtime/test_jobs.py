"""Jobs end to end in the test's event loop (real Redis and fakeredis): the client API, the
worker's job dispatcher (inline sync, threaded sync, async), retries on durable timers,
timeouts, progress, cancellation by lock stealing, poison, bad input refused before writing."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from durable_redis import (
    ActivityContext,
    App,
    Client,
    CodecError,
    InvalidIdError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    JobState,
    JobStateError,
    NotRegisteredError,
    PayloadTooLargeError,
    RetryPolicy,
    ValidationError,
    WaitTimeoutError,
)
from durable_redis.core import MsgpackCodec
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.redis_store import RedisStore
from tests.harness import StoreHarness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

app = App("jobs-test", codec=MsgpackCodec(max_payload_bytes=10_000))
calls: dict[str, int] = {}
release = threading.Event()


@dataclass
class Email:
    to: str
    subject: str


@app.activity
def send(ctx: ActivityContext, email: Email) -> str:
    assert isinstance(email, Email)  # typed from the signature
    return f"sent {email.subject} to {email.to}"


@app.activity
async def add(ctx: ActivityContext, xs: list[int]) -> int:
    return sum(xs)


@app.activity
def flaky(ctx: ActivityContext, key: str) -> int:
    calls[key] = calls.get(key, 0) + 1
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt}")
    return ctx.attempt


@app.activity
def bad(ctx: ActivityContext, x: int) -> int:
    raise KeyError(f"no {x}")


@app.activity
async def slow(ctx: ActivityContext, steps: int) -> str:
    for i in range(steps):
        ctx.report_progress({"done": i + 1, "of": steps})
        await anyio.sleep(0.05)
    return "finished"


in_flight: dict[str, list[int]] = {}  # key -> [running now, most at once]


@app.activity
async def overlap(ctx: ActivityContext, key: str) -> int:
    seen = in_flight.setdefault(key, [0, 0])
    seen[0] += 1
    seen[1] = max(seen[1], seen[0])
    await anyio.sleep(0.05)
    seen[0] -= 1
    return ctx.delivery


@app.activity
def blocking(ctx: ActivityContext, _: None) -> str:
    ctx.report_progress("waiting")
    while not ctx.is_cancelled and not release.is_set():
        release.wait(0.01)
    return "released"


OPTIONS = WorkerOptions(
    lock_timeout=2.0,
    renewal_interval=0.2,
    fetch_wait=0.2,
    shutdown_grace_period=1.0,
    janitor_interval=None,
)


@pytest.fixture
async def worker(store: RedisStore) -> AsyncIterator[Callable[..., Worker]]:
    started: list[Worker] = []
    async with anyio.create_task_group() as tg:

        def start(options: WorkerOptions = OPTIONS) -> Worker:
            w = Worker(app, store, options)
            started.append(w)
            tg.start_soon(w.run)
            return w

        yield start
        for w in started:
            w.stop()


async def test_enqueue_and_result_typed(store: RedisStore, worker: Callable[..., Worker]) -> None:
    w = worker()
    client = Client(store, app)
    job = await client.enqueue(send, Email("a@b.c", "hi"))
    assert await job.result(timeout=10) == "sent hi to a@b.c"
    status = await job.status()
    assert status.state is JobState.COMPLETED and status.attempt == 1
    assert status.started_at is not None and status.finished_at is not None
    jobs = await client.enqueue_many(add, [[i, i] for i in range(300)])
    assert [await j.result(timeout=10) for j in jobs] == [2 * i for i in range(300)]
    # sync activities are probed in the pool, then (if fast) run inline
    for _ in range(5):
        await (await client.enqueue(send, Email("x", "y"))).result(timeout=10)
    speed = w._jobs._speed["send"]
    assert speed.inline or speed.pinned  # pinned: a probe was slow (a loaded machine)


def test_fast_sync_activities_go_inline_and_slow_ones_back_to_the_pool() -> None:
    from durable_redis.runtime._speed import Speed

    s = Speed()
    for _ in range(2):
        s.record(0.0001, inline=False)
    assert not s.inline
    s.record(0.0001, inline=False)
    assert s.inline  # three fast probes
    s.record(0.005, inline=True)
    assert s.inline  # a little slower inline: still fine
    s.record(0.05, inline=True)
    assert not s.inline and s.pinned  # one slow inline run: the pool for good
    s.record(0.0001, inline=False)
    assert not s.inline
    slow = Speed()
    slow.record(0.01, inline=False)
    assert slow.pinned and not slow.inline
    never, always = Speed(inline=False), Speed(inline=True)  # decided by the registration
    for _ in range(5):
        never.record(0.0001, inline=False)
        always.record(0.05, inline=True)
    assert not never.inline and always.inline


async def test_dedupe_by_job_id(store: RedisStore, worker: Callable[..., Worker]) -> None:
    client = Client(store, app)
    first = await client.enqueue(add, [1], job_id="once")
    again = await client.enqueue(add, [100], job_id="once")
    assert again.id == first.id == "once"
    worker()
    assert await first.result(timeout=10) == 1
    await client.enqueue(add, [100], job_id="once")  # kept while its result is retained
    assert await (await client.get_job("once")).result(timeout=5) == 1
    await client.enqueue(add, [100], job_id="once", if_exists="replace")
    assert await (await client.get_job("once")).result(timeout=10) == 100


async def test_retries_on_durable_timers_then_typed_failure(
    store: RedisStore, worker: Callable[..., Worker]
) -> None:
    worker()
    client = Client(store, app)
    policy = RetryPolicy(max_attempts=3, initial_delay=0.05)
    job = await client.enqueue(flaky, store.namespace, retry=policy)
    assert await job.result(timeout=10) == 3
    assert calls[store.namespace] == 3
    failing = await client.enqueue(bad, 7, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    with pytest.raises(JobFailedError) as info:
        await failing.result(timeout=10)
    assert info.value.type_name == "KeyError" and "no 7" in info.value.details.message
    assert "Traceback" in info.value.details.traceback
    status = await failing.status()
    assert status.state is JobState.FAILED and status.attempt == 2
    no_retry = await client.enqueue(
        bad, 1, retry=RetryPolicy(max_attempts=5, non_retryable=(KeyError,))
    )
    with pytest.raises(JobFailedError):
        await no_retry.result(timeout=10)
    assert (await no_retry.status()).attempt == 1
    # retry_job: a failed job runs again from its first attempt
    await failing.retry()
    with pytest.raises(JobFailedError):
        await failing.result(timeout=10)
    with pytest.raises(JobStateError):
        await job.retry()  # completed: not eligible


async def test_timeout_progress_and_cancel(
    store: RedisStore, worker: Callable[..., Worker]
) -> None:
    worker()
    client = Client(store, app)
    timed = await client.enqueue(slow, 100, timeout=0.2)
    with pytest.raises(JobFailedError, match="timeout"):
        await timed.result(timeout=10)
    job = await client.enqueue(slow, 6)
    with anyio.fail_after(10):
        while (await job.status()).progress is None:
            await anyio.sleep(0.02)
    assert (await job.status()).state is JobState.RUNNING
    assert await job.result(timeout=10) == "finished"
    assert (await job.status()).progress == {"done": 6, "of": 6}
    # a running job is cancelled by lock stealing: its worker stops it, its result is refused
    release.clear()
    stuck = await client.enqueue(blocking, None)
    with anyio.fail_after(10):
        while (await stuck.status()).progress != "waiting":
            await anyio.sleep(0.02)
    assert await stuck.cancel("changed my mind") is JobState.RUNNING
    with pytest.raises(JobCancelledError, match="changed my mind"):
        await stuck.result(timeout=5)
    release.set()
    await anyio.sleep(0.5)  # renewal interval 0.2 s: the run saw its lease lost
    assert (await stuck.status()).state is JobState.CANCELLED
    queued = await client.enqueue(add, [1], delay=60)
    assert await queued.cancel() is JobState.QUEUED
    with pytest.raises(JobCancelledError):
        await queued.result(timeout=1)


async def test_delay_at_priority_and_listing(store: RedisStore) -> None:
    client = Client(store, app)
    soon = datetime.now(UTC) + timedelta(seconds=30)
    later = await client.enqueue(add, [1], at=soon, job_id="later")
    await client.enqueue(add, [2], delay=timedelta(seconds=30), job_id="delayed")
    await client.enqueue(add, [3], priority=5, job_id="urgent")
    queued = await client.list_jobs(status="queued")
    assert {s.job_id for s in queued} == {"later", "delayed", "urgent"}
    await client.enqueue(send, Email("x", "y"), job_id="mail")
    assert len(await client.list_jobs(name="add", limit=2)) == 2
    assert [s.job_id for s in await client.list_jobs(name="send")] == ["mail"]
    with pytest.raises(WaitTimeoutError):
        await later.result(timeout=0.1)
    with pytest.raises(ValidationError):
        await client.list_jobs(status="bogus")


async def test_bad_input_is_refused_before_anything_is_written(store: RedisStore) -> None:
    client = Client(store, app)
    refused: list[tuple[type[Exception], Callable[[], object]]] = [
        (NotRegisteredError, lambda: client.enqueue("nope", 1)),
        (CodecError, lambda: client.enqueue(add, object())),
        (PayloadTooLargeError, lambda: client.enqueue(add, list(range(20_000)))),
        (InvalidIdError, lambda: client.enqueue(add, [1], job_id="bad\nid")),
        (InvalidIdError, lambda: client.enqueue(add, [1], job_id="")),
        (ValidationError, lambda: client.enqueue(add, [1], at=datetime(2030, 1, 1))),
        (ValidationError, lambda: client.enqueue(add, [1], delay=-1)),
        (ValidationError, lambda: client.enqueue(add, [1], priority=1 << 20)),
        (ValidationError, lambda: client.enqueue(add, [1], result_ttl=-5)),
        (ValidationError, lambda: client.enqueue(add, [1], timeout=0)),
        (ValidationError, lambda: client.enqueue(add, [1], if_exists="sometimes")),
        (InvalidIdError, lambda: client.enqueue_many(add, [[1], [2]], job_ids=["ok", "b{ad"])),
    ]
    for exc, call in refused:
        with pytest.raises(exc):
            await call()  # type: ignore[misc]
    assert await client.list_jobs() == []
    with pytest.raises(JobNotFoundError):
        await client.get_job("ok")


async def test_poison_job_fails_and_unknown_name_is_handed_back(
    store: RedisStore, worker: Callable[..., Worker]
) -> None:
    client = Client(store)  # no app: names are the workers' business
    job = await client.enqueue("add", [5])
    for _ in range(2):  # two deliveries that never finished (as if two workers crashed)
        [lease] = await store.fetch_jobs("dead", limit=1, lock_ms=100)
        assert lease.job_id == job.id
        await anyio.sleep(0.15)
    unknown = await client.enqueue("not_registered_here", 1)
    w = worker(dataclasses.replace(OPTIONS, max_attempts=2))
    with pytest.raises(JobFailedError, match="PoisonMessageError"):
        await job.result(timeout=10)
    with anyio.fail_after(5):
        while "not_registered_here" not in w._jobs._unregistered:
            await anyio.sleep(0.02)
    status = await unknown.status()
    assert status.state is JobState.QUEUED and status.deliveries == 0  # never failed for it


def _fields(options: WorkerOptions) -> dict[str, object]:
    return {f: getattr(options, f) for f in options.__dataclass_fields__}


async def test_sync_client_from_threads(
    store: RedisStore,
    store_harness: StoreHarness,
    worker: Callable[..., Worker],
    request: pytest.FixtureRequest,
) -> None:
    if store_harness.backend != "redis":
        pytest.skip("not applicable: SyncClient opens its own connection (real Redis only)")
    from durable_redis import SyncClient

    worker()
    url = request.getfixturevalue("redis_url")

    def blocking_use() -> list[object]:
        with SyncClient.from_url(url, namespace=store.namespace, app=app) as client:
            results: list[object] = []

            def one(i: int) -> None:
                job = client.enqueue(add, [i, 1])
                results.append(job.result(timeout=10))

            threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            job = client.enqueue(send, Email("s@y.nc", "sync"))
            results.append(job.result(timeout=10))
            results.append(job.status().state)
            results.append(client.get_job(job.id).id == job.id)
            assert client.pause_queue("sync-q") is False
            parked = client.enqueue(send, Email("p@y.nc", "parked"), queue="sync-q")
            [q] = [q for q in client.list_queues() if q.name == "sync-q"]
            results.append((q.ready, q.paused, parked.status().state))
            results.append(client.resume_queue("sync-q"))
            return results

    out = await anyio.to_thread.run_sync(blocking_use)
    assert sorted(out[:8]) == list(range(1, 9))  # type: ignore[type-var]
    assert out[8:] == [
        "sent sync to s@y.nc", JobState.COMPLETED, True, (1, True, JobState.QUEUED), True
    ]  # fmt: skip


def test_sync_client_refuses_a_running_loop(redis_url: str) -> None:
    from durable_redis import SyncClient

    client = SyncClient.from_url(redis_url, namespace="t-sync-loop", app=app)
    try:

        async def inside() -> None:
            with pytest.raises(RuntimeError, match="async Client"):
                client.list_jobs()

        anyio.run(inside)
    finally:
        client.close()


async def test_redelivered_jobs_run_alone_and_hand_the_others_back(
    store: RedisStore, worker: Callable[..., Worker]
) -> None:
    client = Client(store, app)
    key = store.namespace
    jobs = await client.enqueue_many(overlap, [key] * 5)
    dead = await store.fetch_jobs("dead", limit=5, lock_ms=100)  # as if a worker crashed
    assert len(dead) == 5
    await anyio.sleep(0.15)
    w = worker()
    # every redelivered job ran alone; the ones handed back got their delivery back
    assert [await j.result(timeout=10) for j in jobs] == [2] * 5
    assert in_flight[key][1] == 1
    assert w._jobs._suspect is None
    fresh = await client.enqueue_many(overlap, [key + "-fresh"] * 5)  # first deliveries: at once
    assert [await j.result(timeout=10) for j in fresh] == [1] * 5
    assert in_flight[key + "-fresh"][1] > 1


def test_job_tasks_encode_small_and_decode_back() -> None:
    from durable_redis.core.jobs import JobTask, decode_job_task, encode_job_tasks, job_task

    plain = job_task(b"\x01", retry=None, timeout_ms=None)
    tuned = job_task(
        b"x", retry=RetryPolicy(max_attempts=3, non_retryable=(KeyError,)), timeout_ms=5
    )
    for template in (plain, tuned):
        encoded = encode_job_tasks(template, [b"a", b"bb" * 300])
        assert [decode_job_task(e) for e in encoded] == [
            JobTask(
                **{**{f: getattr(template, f) for f in template.__dataclass_fields__}, "input": i}
            )
            for i in (b"a", b"bb" * 300)
        ]
    assert len(encode_job_tasks(plain, [b"\x01"])[0]) < 32  # defaults are not stored


async def test_an_idle_worker_fetches_once_per_job(
    store: RedisStore, store_harness: StoreHarness, worker: Callable[..., Worker]
) -> None:
    """After a fetch that drained the ready queue, the worker waits on the wake-up marker
    instead of fetching again at once: one fetch_jobs per job on an idle worker (was ~2)."""
    if store_harness.backend == "cluster":
        pytest.skip("not applicable: the cluster's doorbell always tries first")
    worker()
    client = Client(store, app)
    for _ in range(3):  # warm: the activity measured fast, the worker blocked on its marker
        await (await client.enqueue(send, Email("x", "y"))).result(timeout=10)
    before = store.calls["fetch_jobs"]
    n = 30
    for _ in range(n):
        await (await client.enqueue(send, Email("x", "y"))).result(timeout=10)
    fetches = store.calls["fetch_jobs"] - before
    assert n <= fetches <= n + 5  # + the few fetches an idle fetch_wait timeout makes
