"""Schedules on Redis (the tick arithmetic is tested in tests/core): the claim (one winner per
tick, on the Redis clock), and workers running a schedule declared in code and one created
through the client, with pause / resume / trigger / delete."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from durable_redis import ActivityContext, App, Client, OrchestrationContext
from durable_redis.core import MsgpackCodec
from durable_redis.core.schedules import (
    ScheduleDefinition,
    schedule_declaration,
    spec_of,
    target_of,
)
from durable_redis.errors import ScheduleNotFoundError, ValidationError
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.redis_store import RedisStore
from tests.harness import StoreHarness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

app = App("sched-test")
runs: dict[str, list[int]] = {}


@app.schedule(every=1, input="tick", name="every-second")
@app.activity
def beat(ctx: ActivityContext, label: str) -> str:
    runs.setdefault(ctx.job_id or "", []).append(1)
    return label


@app.activity
def note(ctx: ActivityContext, key: str) -> str:
    runs.setdefault(key, []).append(1)
    return key


def spec(**kw: object) -> object:
    definition = ScheduleDefinition(name="s", activity="note", input="k", **kw)  # type: ignore[arg-type]
    return spec_of(definition, MsgpackCodec())


async def test_a_tick_is_claimed_once(store: RedisStore) -> None:
    s = spec(every_ms=1000)
    now = await store.server_time_ms()
    name, data, digest, _ = schedule_declaration(s, now)  # type: ignore[arg-type]
    due = now - 10
    assert await store.declare_schedule(name, data, digest, due) == "created"
    assert await store.declare_schedule(name, data, digest, due + 999) == "unchanged"
    claim = {
        "expected_due_ms": due,
        "next_due_ms": due + 1000,
        "overlap": "allow",
        "activity": "note",
        "task": b"t",
        "priority": 0,
        "result_ttl_ms": 60_000,
        "ticks": [due],
    }
    results = []

    async def race() -> None:
        results.append(await store.claim_schedule(name, **claim))  # type: ignore[arg-type]

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(race)
    assert results.count((1, False)) == 1 and results.count(None) == 4
    jobs = await store.list_jobs()
    assert [j.job_id for j in jobs] == [store.schedule_job_id(name, due)]
    # not due yet: nothing claimed
    assert await store.claim_schedule(name, **{**claim, "expected_due_ms": due + 1000}) is None  # type: ignore[arg-type]
    await store.pause_schedule(name)
    [rec] = await store.list_schedules()
    assert rec.paused and await store.list_schedules(due_before_ms=due + 10_000) == []
    await store.delete_schedule(name)
    assert await store.list_schedules() == []
    with pytest.raises(ScheduleNotFoundError):
        await store.pause_schedule(name)


OPTIONS = WorkerOptions(
    lock_timeout=2.0, fetch_wait=0.2, shutdown_grace_period=1.0, janitor_interval=None
)


@pytest.fixture
async def worker(store: RedisStore) -> AsyncIterator[Callable[[], Worker]]:
    started: list[Worker] = []
    async with anyio.create_task_group() as tg:

        def start() -> Worker:
            w = Worker(app, store, OPTIONS)
            started.append(w)
            tg.start_soon(w.run)
            return w

        yield start
        for w in started:
            w.stop()


async def test_workers_run_declared_and_created_schedules(
    store: RedisStore, store_harness: StoreHarness, worker: Callable[[], Worker]
) -> None:
    if store_harness.backend == "cluster":
        pytest.skip("not applicable: the cluster variant (in-process timing test)")
    client = Client(store, app)
    key = store.namespace
    workers = [worker(), worker()]  # two workers race for every tick
    await client.create_schedule("fast", note, key, every=1, overlap="allow")
    with anyio.fail_after(15):
        while len(runs.get(key, [])) < 3:
            await anyio.sleep(0.05)
    infos = {s.name: s for s in await client.list_schedules()}
    assert set(infos) == {"every-second", "fast"}
    assert infos["fast"].next_run_at is not None and not infos["fast"].paused
    jobs = [j for j in await client.list_jobs(name="note", limit=500)]
    ticks = sorted(int(j.job_id.split(":")[2]) for j in jobs)
    assert len(ticks) == len(set(ticks))  # one job per tick, whichever worker claimed it
    assert all(b - a == 1000 for a, b in itertools.pairwise(ticks))
    assert sum(w._schedules.claimed for w in workers) >= 3
    await client.pause_schedule("fast")
    before = len(runs[key])
    await anyio.sleep(1.5)
    assert len(runs[key]) <= before + 1  # at most a job claimed before the pause
    paused = len(runs[key])
    job = await client.trigger_schedule("fast")
    assert await job.result(timeout=10) == key
    assert len(runs[key]) == paused + 1
    await client.resume_schedule("fast")
    with anyio.fail_after(10):
        while len(runs[key]) < paused + 2:
            await anyio.sleep(0.05)
    await client.delete_schedule("fast")
    with pytest.raises(ScheduleNotFoundError):
        await client.get_schedule("fast")


gpu_app = App("sched-gpu")


@gpu_app.schedule(every=1, input="g", name="gpu-beat", overlap="allow")
@gpu_app.activity(queue="gpu")
def gpu_beat(ctx: ActivityContext, label: str) -> str:
    runs.setdefault(f"gpu:{ctx.worker_id}", []).append(1)
    return label


async def test_schedule_ticks_go_to_the_activitys_queue(store: RedisStore) -> None:
    """A tick's job (and a trigger's) goes to the queue of the activity: a worker serving only
    "default" leaves it queued, one serving "gpu" runs it."""
    import dataclasses

    client = Client(store, gpu_app)
    other = dataclasses.replace(OPTIONS, queues=("default",), worker_id="cpu-only")
    gpu = dataclasses.replace(OPTIONS, queues=("gpu",), worker_id="gpu-only")
    async with anyio.create_task_group() as tg:
        cpu_worker = Worker(gpu_app, store, other)
        tg.start_soon(cpu_worker.run)
        with anyio.fail_after(15):  # the cpu worker claims ticks but never runs them
            while True:
                found = {q.name: q for q in await client.list_queues()}
                if "gpu" in found and found["gpu"].ready >= 2:
                    break
                await anyio.sleep(0.05)
        triggered = await client.trigger_schedule("gpu-beat")
        assert "gpu:cpu-only" not in runs
        gpu_worker = Worker(gpu_app, store, gpu)
        tg.start_soon(gpu_worker.run)
        assert await triggered.result(timeout=10) == "g"
        with anyio.fail_after(15):
            while len(runs.get("gpu:gpu-only", [])) < 3:
                await anyio.sleep(0.05)
        assert "gpu:cpu-only" not in runs
        cpu_worker.stop()
        gpu_worker.stop()


orch_app = App("sched-orch-test")


@orch_app.schedule(every=5, input=3, name="orch-every-5")
@orch_app.orchestration
async def doubled(ctx: OrchestrationContext, n: int) -> int:
    return 2 * n


def test_app_schedule_on_an_orchestration_targets_it() -> None:
    [definition] = orch_app.schedules
    assert (definition.orchestration, definition.activity) == ("doubled", "")
    assert orch_app.activity_names == []  # not registered as an activity
    stored = spec_of(definition, MsgpackCodec())
    assert target_of(stored) == ("orchestration", "doubled")
    assert MsgpackCodec().decode(stored.task) == 3


async def test_an_orchestration_tick_starts_one_instance(store: RedisStore) -> None:
    definition = ScheduleDefinition(
        name="o", activity="", orchestration="doubled", input=4, every_ms=1000
    )
    s = spec_of(definition, MsgpackCodec())
    now = await store.server_time_ms()
    name, data, digest, _ = schedule_declaration(s, now)
    due = now - 10
    await store.declare_schedule(name, data, digest, due)
    claim: dict[str, Any] = {
        "expected_due_ms": due,
        "next_due_ms": due + 1000,
        "overlap": "allow",
        "last_instance_id": None,
        "orchestration": "doubled",
        "version": "",
        "input": s.task,
        "start_message": b"m",
        "ticks": [due],
    }
    results = []

    async def race() -> None:
        results.append(await store.claim_schedule_start(name, **claim))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(race)
    assert results.count((1, False)) == 1 and results.count(None) == 4
    iid = store.schedule_instance_id(name, due)
    assert iid.startswith(f"o@{due}")
    client = Client(store, orch_app)
    state = await client.get_status(iid)
    assert state is not None and state.status.value == "pending"
    [rec] = await store.list_schedules()
    assert rec.last_job_id == iid
    # the same tick due again (a re-declared spec): the existing instance is left alone
    await store.declare_schedule(name, data, digest + "x", due)
    assert await store.claim_schedule_start(name, **claim) is None  # stale last instance read
    again = {**claim, "last_instance_id": iid}
    assert await store.claim_schedule_start(name, **again) == (0, False)
    # overlap skip: the previous instance is still pending, so the next tick starts nothing
    await store.declare_schedule(name, data, digest + "y", due)
    skip = {**again, "overlap": "skip", "ticks": [due + 1]}
    assert await store.claim_schedule_start(name, **skip) == (0, True)
    assert [i.instance_id for i in (await client.list_instances()).instances] == [iid]


async def test_create_schedule_takes_one_target(store: RedisStore) -> None:
    client = Client(store, orch_app)
    with pytest.raises(ValidationError):
        await client.create_schedule("x", every=1)
    with pytest.raises(ValidationError):
        await client.create_schedule("x", "note", orchestration=doubled, every=1)
    info = await client.create_schedule("x", orchestration=doubled, input=1, every=1)
    assert (info.target, info.orchestration, info.activity) == ("orchestration", "doubled", "")
