"""Burst mode (``Worker.run(burst=True)``, ``run_until_idle``, ``durable-redis worker --burst``):
drain until idle, then stop, so that tests and one-shot jobs need no sleep.

"Idle" is defined in ``durable_redis.runtime.burst``: nothing in flight here, nothing ready or
running in the namespace, no timer due within the horizon.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.runtime.burst import depths_idle
from durable_redis.storage.base import InstanceStatus, QueueDepths
from durable_redis.storage.redis_store import RedisStore
from tests.harness import StoreHarness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]

app = App("burst")
_gate = {"open": True}


@app.activity
async def double(ctx: ActivityContext, x: int) -> int:
    while not _gate["open"]:
        await anyio.sleep(0.01)
    return 2 * x


@app.orchestration
async def fan_out(ctx: OrchestrationContext, n: int) -> int:
    values = [await ctx.call_activity(double, i) for i in range(n)]
    return sum(values)


@app.orchestration
async def nap(ctx: OrchestrationContext, seconds: float) -> str:
    await ctx.sleep(seconds)
    return "awake"


OPTIONS = WorkerOptions(
    lock_timeout=2.0,  # a lease a stopped worker left behind comes back within 2 s
    session_lock_timeout=2.0,
    renewal_interval=0.5,
    fetch_wait=0.1,
    janitor_interval=None,
    shutdown_grace_period=1.0,
)


async def _status(client: Client, iid: str) -> InstanceStatus:
    state = await client.get_status(iid)
    assert state is not None
    return state.status


async def test_burst_run_drains_every_instance_and_returns(store: RedisStore) -> None:
    client = Client(store, app)
    iids = [await client.start(fan_out, n) for n in (1, 3, 5)]
    with anyio.fail_after(30):
        await Worker(app, store, OPTIONS).run(burst=True)
    for iid, n in zip(iids, (1, 3, 5), strict=True):
        assert await _status(client, iid) is InstanceStatus.COMPLETED
        assert await client.wait_for_completion(iid, timeout=1) == n * (n - 1)


async def test_a_timer_due_within_the_horizon_keeps_the_worker_up(store: RedisStore) -> None:
    client = Client(store, app)
    iid = await client.start(nap, 0.5)
    with anyio.fail_after(30):
        await Worker(app, store, OPTIONS).run_until_idle(timeout=20, horizon=2.0)
    assert await _status(client, iid) is InstanceStatus.COMPLETED


async def test_a_timer_beyond_the_horizon_does_not(store: RedisStore) -> None:
    client = Client(store, app)
    iid = await client.start(nap, 3600.0)
    started = time.monotonic()
    await Worker(app, store, OPTIONS).run_until_idle(timeout=20, horizon=1.0)
    assert time.monotonic() - started < 15
    assert await _status(client, iid) is InstanceStatus.RUNNING  # asleep, its timer stored
    depths = await store.queue_depths()
    assert depths.timers == 1 and depths.extra["next_timer_in_ms"] > 3_500_000


async def test_run_until_idle_times_out_when_work_never_ends(store: RedisStore) -> None:
    _gate["open"] = False
    try:
        client = Client(store, app)
        iid = await client.start(fan_out, 1)
        worker = Worker(app, store, OPTIONS)
        with pytest.raises(TimeoutError):
            await worker.run_until_idle(timeout=1.0)
        assert not worker.activities_in_flight  # stopped: the activity was handed back
    finally:
        _gate["open"] = True
    await Worker(app, store, OPTIONS).run_until_idle(timeout=30)
    assert await _status(client, iid) is InstanceStatus.COMPLETED


def test_idle_depths_rule() -> None:
    def depths(**kw: int) -> QueueDepths:
        extra = {k: kw.pop(k) for k in list(kw) if k not in ("orchestration_messages", "timers")}
        base = {"orchestration_messages": 0, "timers": 0, **kw}
        return QueueDepths(work_items=0, session_work_items=0, extra=extra, **base)

    assert depths_idle(depths(), 1000)
    assert not depths_idle(depths(orchestration_messages=1), 1000)  # a message due now
    assert depths_idle(depths(orchestration_messages=1, timers=1, next_timer_in_ms=5000), 1000)
    assert not depths_idle(depths(orchestration_messages=1, timers=1, next_timer_in_ms=500), 1000)
    assert not depths_idle(depths(leased_work_items=1), 1000)
    assert not depths_idle(depths(locked_instances=1), 1000)


async def test_cli_worker_burst_exits_zero_once_idle(
    store: RedisStore, store_harness: StoreHarness, redis_url: str, namespace: str
) -> None:
    if store_harness.backend != "redis":
        pytest.skip("not applicable: the CLI worker runs against the real server")
    client = Client(store, app)
    iid = await client.start(fan_out, 4)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [
        *(sys.executable, "-m", "durable_redis.cli", "worker", "tests.runtime.test_burst:app"),
        *("--burst", "--redis-url", redis_url, "--namespace", namespace),
    ]
    proc = await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=60)
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert await client.wait_for_completion(iid, timeout=1) == 12


async def test_a_burst_worker_stopped_early_returns_at_once(store: RedisStore) -> None:
    _gate["open"] = False
    try:
        client = Client(store, app)
        await client.start(fan_out, 1)
        worker = Worker(app, store, OPTIONS)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: worker.run(burst=True))
                while not worker.activities_in_flight:
                    await anyio.sleep(0.01)
                worker.stop(grace_period=0.0)  # as SIGTERM would: run() returns, not idle yet
    finally:
        _gate["open"] = True
