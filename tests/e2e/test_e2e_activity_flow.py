"""Flow control by key of the activities orchestrations call (``ctx.call_activity`` with a
registered or a per-call ``Limit``), with real worker processes (docs/routing.md). The
activities log their own start and end (e2e_flow_app); the tests compute from those lines:

- a concurrency limit of 5 per key is never exceeded, also while a worker is SIGKILLed mid-run
  (its slots come back when its leases expire, and every call still completes);
- a rate of 20/s holds within 10% over 10 s;
- fairness: a key with 1,000 queued calls does not hold back another key's single call by more
  than a fetch batch."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import anyio
import e2e_flow_app
import pytest
from e2e_helpers import WorkerPool, eventually
from test_e2e_flow import STEADY, kill_a_busy_worker, max_running, read_log, starts_in_10_s

from durable_redis.client import Client
from durable_redis.core.jobs import Limit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from rel_invariants import store_invariants

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(180)]

APP = "e2e_flow_app:app"


@pytest.fixture
async def fclient(e2e_redis_url: str, namespace: str) -> Any:
    async with Client.from_url(e2e_redis_url, namespace=namespace, app=e2e_flow_app.app) as c:
        yield c


def home(client: Client) -> str:
    """A fresh instance id in one fixed partition (the turns and limits of activity calls
    are judged within a partition; with one partition, any id)."""
    store: Any = client.store
    return str(store.id_for_key(None, "home"))


def starts_of(log: Path) -> list[tuple[str, float]]:
    if not log.exists():
        return []
    return sorted(
        ((k, t) for what, k, t, _, _ in read_log(log) if what == "start"), key=lambda x: x[1]
    )


async def test_a_limit_of_5_per_key_on_called_activities_holds_while_a_worker_is_killed(
    workers: WorkerPool, fclient: Client, tmp_path: Path, e2e_redis_url: str, namespace: str
) -> None:
    log = tmp_path / "runs.log"
    pool = [workers.start(APP, activity_concurrency=8, batch_size=8, **STEADY) for _ in range(3)]
    items = [{"log": str(log), "tenant": f"t{i % 2}", "n": i, "ms": 300} for i in range(40)]
    # one instance per half: the limit holds across the instances of a partition (limits of
    # activities are judged per partition: in a cluster, both are placed in one)
    iids = [
        await fclient.start(e2e_flow_app.fan_out, {"items": half}, instance_id=home(fclient))
        for half in (items[:20], items[20:])
    ]
    killed = await kill_a_busy_worker(log, pool)
    done = [await fclient.wait_for_completion(iid, timeout=90) for iid in iids]
    assert sorted(done[0] + done[1]) == list(range(40))  # none lost
    peak = max_running(log, killed)
    print(f"peak per key (activities of orchestrations): {peak}")
    # 24 activity slots for 2 keys: without the limit a key runs up to 12 at once
    assert set(peak) == {"t0", "t1"} and all(3 <= p <= 5 for p in peak.values()), peak
    # every slot came back (the killed worker's at its leases' expiry), no group state left
    assert store_invariants(e2e_redis_url, namespace) == []


async def test_a_rate_of_20_per_second_on_called_activities_holds_within_10_percent(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    workers.start(APP, **STEADY)
    workers.start(APP, **STEADY)
    items = [{"log": str(log), "tenant": "api", "n": i} for i in range(260)]
    # 13 orchestrations of 20 calls (in one partition: a key's rate is judged per partition),
    # so the workers' CPU goes to the calls rather than to replaying one 520-event history
    iids = [
        await fclient.start(
            e2e_flow_app.fan_out_limited,
            {"items": items[k : k + 20], "limit": [None, 20, 1, 5]},
            instance_id=home(fclient),
        )
        for k in range(0, 260, 20)
    ]
    in_window = await starts_in_10_s(log, 240)
    print(f"rate (activities of orchestrations): {in_window} starts in 10 s (20/s)")
    assert 180 <= in_window <= 220, in_window
    done = [await fclient.wait_for_completion(iid, timeout=60) for iid in iids]
    assert sorted(n for d in done for n in d) == list(range(260))


async def test_one_key_with_1000_queued_calls_does_not_hold_back_another(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    batch = 16
    big = [{"log": str(log), "tenant": "big", "n": i, "ms": 20} for i in range(1000)]
    big_iid = await fclient.start(
        e2e_flow_app.fan_out_limited,
        {"items": big, "limit": [None, None, 1, 1]},
        instance_id=home(fclient),
    )
    workers.start(APP, batch_size=batch, activity_concurrency=batch, **STEADY)
    await eventually(lambda: len(starts_of(log)) >= 100, timeout=60, message="the big key runs")
    sent = time.time()
    small = [{"log": str(log), "tenant": "small", "n": -1}]
    small_iid = await fclient.start(
        e2e_flow_app.fan_out_limited,
        {"items": small, "limit": [None, None, 1, 1]},
        instance_id=home(fclient),
    )
    await fclient.wait_for_completion(small_iid, timeout=30)
    rows = starts_of(log)
    [small_start] = [t for k, t in rows if k == "small"]
    ahead = sum(1 for k, t in rows if k == "big" and sent < t < small_start)
    print(f"fairness (activities): {ahead} calls of the big key started before the small one")
    # the batch in flight and the one it is fetched with (plus the small turn's own commit)
    assert ahead <= 3 * batch, ahead
    assert sum(1 for k, _ in rows if k == "big") < 1000  # it did not wait for the drain
    await fclient.wait_for_completion(big_iid, timeout=120)


# -- orchestration starts ------------------------------------------------------------------


async def test_a_singleton_start_returns_the_running_instance(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    workers.start(APP, **STEADY)
    item = {"log": str(log), "tenant": "solo", "ms": 400}
    first = await fclient.start(e2e_flow_app.singleton_run, {**item, "n": 0})
    await eventually(lambda: len(starts_of(log)) == 1, timeout=30, message="it runs")
    again = [await fclient.start(e2e_flow_app.singleton_run, {**item, "n": i}) for i in (1, 2)]
    assert again == [first, first]  # the running one's id; nothing created
    other = await fclient.start(e2e_flow_app.singleton_run, {**item, "tenant": "b", "n": 9})
    assert other != first  # another key
    assert await fclient.wait_for_completion(first, timeout=30) == 0
    after = await fclient.start(e2e_flow_app.singleton_run, {**item, "n": 3})
    assert after != first  # the key's instance ended: a new one
    assert await fclient.wait_for_completion(after, timeout=30) == 3
    await fclient.wait_for_completion(other, timeout=30)
    assert sorted(k for k, _ in starts_of(log)) == ["b", "solo", "solo"]


async def test_a_debounced_start_runs_once_with_the_last_input(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    workers.start(APP, **STEADY)
    limit = Limit(key="search", debounce=0.6)
    ids = []
    for i in range(5):
        item = {"log": str(log), "tenant": "search", "n": i}
        ids.append(await fclient.start(e2e_flow_app.one_run, item, limit=limit))
        last = time.time()
        await anyio.sleep(0.15)
    assert len(set(ids)) == 1  # every start got the one pending instance
    assert await fclient.wait_for_completion(ids[0], timeout=30) == 4  # the last input
    [(_, t)] = starts_of(log)
    assert t >= last + 0.55, t - last  # after the quiet period since the last start


async def test_a_throttled_start_keeps_one_per_window(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    workers.start(APP, **STEADY)
    limit = Limit(key="report", throttle=1.5)
    t0 = time.monotonic()
    ids = [
        await fclient.start(
            e2e_flow_app.one_run, {"log": str(log), "tenant": "r", "n": i}, limit=limit
        )
        for i in range(5)
    ]
    assert time.monotonic() - t0 < 1.5
    assert len(set(ids)) == 1
    assert await fclient.wait_for_completion(ids[0], timeout=30) == 0  # the first one runs
    while time.monotonic() - t0 < 1.6:
        await anyio.sleep(0.05)
    nxt = await fclient.start(
        e2e_flow_app.one_run, {"log": str(log), "tenant": "r", "n": 7}, limit=limit
    )
    assert nxt != ids[0]
    assert await fclient.wait_for_completion(nxt, timeout=30) == 7
    assert len(starts_of(log)) == 2
