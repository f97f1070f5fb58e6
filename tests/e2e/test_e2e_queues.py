"""Queues with real worker processes: a worker serving "gpu" and one serving "default" each run
only their queue's jobs and the activities orchestrations call (the activity's registered
queue, or the call's override); a session opened for "gpu" runs on one gpu worker only;
priorities of activity calls come out in order; a paused queue keeps its work queued while its
running work finishes, drain awaits that, and resume runs the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import e2e_routing_app
import pytest
from e2e_helpers import WorkerPool, eventually

from durable_redis.client import Client
from durable_redis.storage.job_types import JobState

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(90)]

APP = "e2e_routing_app:app"


@pytest.fixture
async def rclient(e2e_redis_url: str, namespace: str) -> Any:
    async with Client.from_url(e2e_redis_url, namespace=namespace, app=e2e_routing_app.app) as c:
        yield c


async def test_each_worker_runs_only_the_queues_it_serves(
    workers: WorkerPool, rclient: Client
) -> None:
    gpu = workers.start(APP, queues=["gpu"])
    cpu = workers.start(APP, queues=["default"])
    gpu_jobs = await rclient.enqueue_many(e2e_routing_app.gpu_work, range(20))
    cpu_jobs = await rclient.enqueue_many(e2e_routing_app.cpu_work, range(20))
    moved = await rclient.enqueue_many(e2e_routing_app.gpu_work, range(5), queue="default")
    to_gpu = await rclient.enqueue_many(e2e_routing_app.cpu_work, range(5), queue="gpu")
    for handles, pid in ((gpu_jobs, gpu.pid), (cpu_jobs, cpu.pid), (moved, cpu.pid)):
        results = [await h.result(timeout=30) for h in handles]
        assert {r["pid"] for r in results} == {pid}, workers.logs()[-3000:]
    assert {(await h.result(timeout=30))["pid"] for h in to_gpu} == {gpu.pid}


async def test_pause_keeps_jobs_queued_lets_running_finish_and_resume_runs_them(
    workers: WorkerPool, rclient: Client, tmp_path: Path
) -> None:
    workers.start(APP, queues=["gpu", "default"])
    held = await rclient.enqueue(e2e_routing_app.hold, {"dir": str(tmp_path), "name": "h"})
    await eventually(lambda: (tmp_path / "started-h").exists(), message="hold started")
    assert await rclient.pause_queue("gpu") is False
    waiting = await rclient.enqueue_many(e2e_routing_app.gpu_work, range(10))
    (tmp_path / "release-h").touch()
    assert (await held.result(timeout=30))["pid"] > 0  # in-flight work finishes when paused
    # the worker keeps fetching: a default job enqueued after the gpu ones still runs ...
    probe = await rclient.enqueue(e2e_routing_app.cpu_work, 1)
    assert (await probe.result(timeout=30))["n"] == 1
    # ... and the paused ones are all still queued, none lost
    states = {(await h.status()).state for h in waiting}
    assert states == {JobState.QUEUED}
    [gpu] = [q for q in await rclient.list_queues() if q.name == "gpu"]
    assert gpu.paused and gpu.ready == 10
    assert await rclient.resume_queue("gpu") is True
    assert sorted([(await h.result(timeout=30))["n"] for h in waiting]) == list(range(10))


# -- activities called from orchestrations, and sessions (docs/routing.md) ----------------------


async def test_activities_called_by_orchestrations_run_only_on_their_queue(
    workers: WorkerPool, rclient: Client
) -> None:
    gpu = workers.start(APP, queues=["gpu"])
    cpu = workers.start(APP, queues=["default"])
    iids = [await rclient.start(e2e_routing_app.routed_calls, 6) for _ in range(4)]
    for iid in iids:
        out = await rclient.wait_for_completion(iid, timeout=60)
        assert set(out["gpu"]) == {gpu.pid}, workers.logs()[-3000:]
        assert set(out["to_gpu"]) == set(out["by_name"]) == {gpu.pid}
        assert set(out["default"]) == set(out["to_default"]) == {cpu.pid}
    history = await rclient.get_history(iids[0])
    queues = [e.queue for e in history if type(e).__name__ == "ActivityScheduled"]
    assert queues.count("gpu") == 6 + 2 + 2 and queues.count(None) == 6 + 2


async def test_a_gpu_session_never_runs_elsewhere(workers: WorkerPool, rclient: Client) -> None:
    gpu_a = workers.start(APP, queues=["gpu"])
    gpu_b = workers.start(APP, queues=["gpu", "default"])
    cpu = workers.start(APP, queues=["default"])
    iids = [await rclient.start(e2e_routing_app.gpu_session, 5) for _ in range(12)]
    owners = set()
    for iid in iids:
        steps = await rclient.wait_for_completion(iid, timeout=90)
        pids = {s["pid"] for s in steps}
        assert len(pids) == 1, steps  # affinity: one owner for the whole session
        assert cpu.pid not in pids, workers.logs()[-3000:]
        assert [s["count"] for s in steps] == [1, 2, 3, 4, 5]  # its in-memory state held
        owners |= pids
    assert owners <= {gpu_a.pid, gpu_b.pid}


async def test_priorities_of_activity_calls_come_out_in_order(
    workers: WorkerPool, rclient: Client, tmp_path: Path
) -> None:
    order_file = tmp_path / "order.log"
    priorities = [0, 5, -3, 5, 100, 0, 7, -3, 100, 1]
    iid = await rclient.start(
        e2e_routing_app.prioritized, {"file": str(order_file), "priorities": priorities}
    )
    # the turn commits before the only worker serving "prio" starts: all are queued at once
    workers.start(APP, queues=["default"])
    await eventually(
        lambda: rclient.get_history(iid),
        message="the turn scheduling the calls committed",
    )

    async def scheduled() -> bool:
        history = await rclient.get_history(iid)
        return sum(type(e).__name__ == "ActivityScheduled" for e in history) == len(priorities)

    await eventually(scheduled, timeout=30, message="all calls scheduled")
    workers.start(APP, queues=["prio"], activity_concurrency=1, batch_size=1)
    out = await rclient.wait_for_completion(iid, timeout=60)
    assert out == list(range(len(priorities)))
    ran = [tuple(map(int, line.split(":"))) for line in order_file.read_text().split()]
    expected = sorted(((p, i) for i, p in enumerate(priorities)), key=lambda x: (-x[0], x[1]))
    assert ran == expected


async def test_drain_waits_for_running_work_and_loses_nothing(
    workers: WorkerPool, rclient: Client, tmp_path: Path
) -> None:
    workers.start(APP, queues=["gpu", "default"])
    job = await rclient.enqueue(e2e_routing_app.hold, {"dir": str(tmp_path), "name": "job"})
    iid = await rclient.start(
        e2e_routing_app.held_calls, {"dir": str(tmp_path), "name": "act", "n": 3}
    )
    await eventually(
        lambda: (tmp_path / "started-job").exists() and (tmp_path / "started-act").exists(),
        message="both holds started",
    )
    status = await rclient.drain_queue("gpu")  # pauses and reports at once
    assert status.paused and (status.jobs_running, status.work_running) == (1, 1)
    with pytest.raises(TimeoutError):
        await rclient.drain_queue("gpu", wait=True, timeout=0.5)
    queued = await rclient.enqueue_many(e2e_routing_app.gpu_work, range(4))
    async with anyio.create_task_group() as tg:
        done: list[Any] = []

        async def drain() -> None:
            done.append(await rclient.drain_queue("gpu", wait=True, timeout=30))

        tg.start_soon(drain)
        await anyio.sleep(0.3)
        assert not done  # still running
        (tmp_path / "release-job").touch()
        (tmp_path / "release-act").touch()
    [drained] = done
    assert drained.running == 0 and drained.paused
    assert (await job.result(timeout=10))["pid"] > 0  # in-flight work finished
    # the orchestration's next gpu calls and the new jobs wait, queued, while it is paused
    await eventually(
        lambda: _work_ready(rclient), timeout=20, message="the next gpu call is queued"
    )
    assert {(await h.status()).state for h in queued} == {JobState.QUEUED}
    assert await rclient.resume_queue("gpu") is True
    assert await rclient.wait_for_completion(iid, timeout=30) == [0, 1, 2]
    assert sorted([(await h.result(timeout=30))["n"] for h in queued]) == [0, 1, 2, 3]
    final = await rclient.queue_status("gpu")
    assert (final.paused, final.running, final.work_ready) == (False, 0, 0)


async def _work_ready(client: Client) -> bool:
    return (await client.queue_status("gpu")).work_ready == 1


async def test_a_gpu_session_whose_owner_dies_moves_to_another_gpu_worker_only(
    workers: WorkerPool, rclient: Client, tmp_path: Path
) -> None:
    gpu_a = workers.start(APP, queues=["gpu"])
    gpu_b = workers.start(APP, queues=["gpu"])
    cpu = workers.start(APP, queues=["default"])
    iid = await rclient.start(e2e_routing_app.gpu_session_held, {"dir": str(tmp_path), "name": "s"})
    await eventually(lambda: (tmp_path / "started-s").exists(), message="the held step started")
    history = await rclient.get_history(iid)
    first = next(e for e in history if type(e).__name__ == "ActivityCompleted")
    owner_pid = rclient.codec.decode(first.result)["pid"]
    owner = gpu_a if owner_pid == gpu_a.pid else gpu_b
    other = gpu_b if owner is gpu_a else gpu_a
    owner.kill()
    (tmp_path / "release-s").touch()
    pids = await rclient.wait_for_completion(iid, timeout=60)
    assert pids[0] == owner_pid
    assert pids[1] == pids[2] == other.pid, workers.logs()[-3000:]  # never the cpu worker
    assert cpu.pid not in pids


async def test_a_killed_gpu_workers_activity_is_redelivered_on_gpu_only(
    workers: WorkerPool, rclient: Client, tmp_path: Path
) -> None:
    first = workers.start(APP, queues=["gpu"])
    iid = await rclient.start(e2e_routing_app.held_pid, {"dir": str(tmp_path), "name": "k"})
    await eventually(lambda: (tmp_path / "started-k").exists(), message="the hold started")
    cpu = workers.start(APP, queues=["default"])  # free to take anything it serves
    first.kill()
    second = workers.start(APP, queues=["gpu"])
    (tmp_path / "release-k").touch()
    assert await rclient.wait_for_completion(iid, timeout=60) == second.pid
    assert cpu.alive()
