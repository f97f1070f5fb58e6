"""Flow control by key with real worker processes (docs/routing.md). Each activity logs its own
start and end (unix time, pid) to a file; the tests compute from those lines the most jobs of
one key that ever ran at once, the rate of a key's starts, and the order of starts:

- a concurrency limit of 5 per key is never exceeded, also while a worker is SIGKILLed mid-run
  (its slots come back when its leases expire, and every job still completes);
- a rate of 20/s holds within 10% over 10 s;
- fairness: a key with 10,000 queued jobs does not hold back another key's single job by more
  than a fetch batch;
- singleton (concurrency 1), debounce and throttle semantics."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.core.jobs import Limit
from durable_redis.devtools import WorkerProcess
from durable_redis.storage.keys import partition_of
from tests.e2e import e2e_flow_app
from tests.e2e.e2e_helpers import WorkerPool, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(180)]

APP = "e2e_flow_app:app"
# leases long enough that a loaded machine never lets a live job's lease lapse (a lapsed
# lease is redelivered while the first run goes on: at least once, and two runs at once)
STEADY = {"lock_timeout": 4.0, "renewal_interval": 0.5}


@pytest.fixture
async def fclient(e2e_redis_url: str, namespace: str) -> Any:
    async with Client.from_url(e2e_redis_url, namespace=namespace, app=e2e_flow_app.app) as c:
        yield c


def read_log(path: Path) -> list[tuple[str, str, float, int, int]]:
    """(what, key, time, pid, n) per line."""
    out = []
    for line in path.read_text().splitlines():
        what, key, t, pid, n = line.split(" ")
        out.append((what, key, float(t), int(pid), int(n)))
    return out


def max_running(path: Path, killed: dict[int, float]) -> dict[str, int]:
    """The most runs of each key in progress at once: a run is [its start, its end], or until
    its worker's SIGKILL (``killed``: pid -> time) when it never ended."""
    open_runs: dict[tuple[int, int], tuple[str, float]] = {}
    events: list[tuple[float, int, str]] = []
    for what, key, t, pid, n in read_log(path):
        if what == "start":
            open_runs[(pid, n)] = (key, t)
            events.append((t, 1, key))
        else:
            open_runs.pop((pid, n), None)
            events.append((t, -1, key))
    for (pid, _), (key, _) in open_runs.items():
        events.append((killed[pid], -1, key))  # cut short by the kill
    peak: dict[str, int] = defaultdict(int)
    now: dict[str, int] = defaultdict(int)
    for _, delta, key in sorted(events, key=lambda e: (e[0], e[1])):  # ends first on a tie
        now[key] += delta
        peak[key] = max(peak[key], now[key])
    return dict(peak)


def start_times(log: Path) -> list[float]:
    if not log.exists():
        return []
    return sorted(t for what, _, t, _, _ in read_log(log) if what == "start")


async def starts_in_10_s(log: Path, wanted: int) -> int:
    """Once ``wanted`` runs started: how many started in the 10 s from 1 s after the first
    (after the burst of 10 a key may take at once)."""
    await eventually(lambda: len(start_times(log)) >= wanted, timeout=40, message="the starts")
    starts = start_times(log)
    t0 = starts[0] + 1.0
    return sum(1 for t in starts if t0 <= t < t0 + 10.0)


async def kill_a_busy_worker(log: Path, pool: list[WorkerProcess]) -> dict[int, float]:
    """SIGKILL one of ``pool`` seen running (a start without its end in ``log``), once all
    of them are alive; returns {its pid: the time of the kill} for ``max_running``."""
    by_pid = {w.pid: w for w in pool}
    victim: list[int] = []

    def one_is_running() -> bool:
        if not log.exists():
            return False
        running: set[tuple[int, int]] = set()
        for what, _, _, pid, n in read_log(log):
            (running.add if what == "start" else running.discard)((pid, n))
        victim[:] = [pid for pid, _ in running if pid in by_pid][:1]
        return bool(victim) and all(w.alive() for w in pool)

    await eventually(one_is_running, timeout=30, message="a worker runs its work")
    by_pid[victim[0]].kill()
    return {victim[0]: time.time()}


async def test_a_limit_of_5_per_key_holds_while_a_worker_is_killed(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    pool = [workers.start(APP, job_concurrency=8, **STEADY) for _ in range(3)]
    handles = await fclient.enqueue_many(
        e2e_flow_app.tenant_work,
        [{"log": str(log), "tenant": f"t{i % 2}", "n": i, "ms": 300} for i in range(60)],
    )
    # kill a worker while it runs jobs (it holds slots until its leases expire)
    killed = await kill_a_busy_worker(log, pool)
    results = [await h.result(timeout=60) for h in handles]
    assert sorted(r["n"] for r in results) == list(range(60))  # none lost
    peak = max_running(log, killed)
    print(f"peak per key: {peak}")
    # never exceeded; and the limit was what held them (24 worker slots for 2 keys: without
    # it a key runs up to 12 at once), the gap between an end and the next start aside
    assert set(peak) == {"t0", "t1"} and all(3 <= p <= 5 for p in peak.values()), peak


async def test_a_rate_of_20_per_second_holds_within_10_percent(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    workers.start(APP, **STEADY)
    workers.start(APP, **STEADY)
    await fclient.enqueue_many(
        e2e_flow_app.rated_work,
        [{"log": str(log), "tenant": "api", "n": i} for i in range(300)],
    )

    in_window = await starts_in_10_s(log, 250)
    print(f"rate: {in_window} starts in 10 s (20/s wanted)")
    assert 180 <= in_window <= 220, in_window  # 20/s x 10 s, +-10%


async def test_one_key_with_10000_queued_does_not_hold_back_another(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    batch = 64
    limit = Limit(key="tenant:{tenant}")  # no cap: only the turns between keys
    big = [{"log": str(log), "tenant": "big", "n": i} for i in range(10_000)]
    await fclient.enqueue_many(e2e_flow_app.keyed_work, big, limit=limit)
    workers.start(APP, job_batch_size=batch, job_concurrency=batch, **STEADY)

    def big_starts() -> int:
        return sum(1 for what, *_ in read_log(log) if what == "start") if log.exists() else 0

    await eventually(lambda: big_starts() >= 500, timeout=60, message="the big key runs")
    # a key in the big key's partition: the turns between keys are taken within a partition
    n = fclient.store.partitions  # type: ignore[attr-defined]
    home = partition_of("tenant:big", n)
    name = next(f"small{i}" for i in range(10_000) if partition_of(f"tenant:small{i}", n) == home)
    small = await fclient.enqueue(
        e2e_flow_app.keyed_work, {"log": str(log), "tenant": name, "n": -1}, limit=limit
    )
    # from the moment it was queued (the Redis clock, this machine's: the log's clock too), not
    # from before the client's call: a loaded machine can stretch that call by ~10 ms, in which
    # the big key's jobs keep starting (~10 per ms) with no small job yet to pass them
    record = await fclient.store.get_job(small.id)  # type: ignore[attr-defined]
    assert record is not None
    sent = record.created_at_ms / 1000
    await small.result(timeout=30)
    rows = read_log(log)
    [small_start] = [t for what, key, t, _, _ in rows if what == "start" and key == name]
    ahead = sum(1 for what, key, t, _, _ in rows if what == "start" and sent < t < small_start)
    # jobs fetched before it (up to one batch in flight) plus its own fetch's share
    print(f"fairness: {ahead} jobs of the big key started before the small key's one")
    assert ahead <= 2 * batch, ahead
    remaining = sum(1 for what, *_ in rows if what == "start")
    assert remaining < 10_000  # it did not wait for the big key to drain


async def test_singleton_runs_one_at_a_time(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    workers.start(APP, **STEADY)
    workers.start(APP, **STEADY)
    handles = await fclient.enqueue_many(
        e2e_flow_app.keyed_work,
        [{"log": str(log), "tenant": "solo", "n": i, "ms": 50} for i in range(12)],
        limit=Limit(key="solo", concurrency=1),
    )
    for h in handles:
        await h.result(timeout=30)
    assert max_running(log, {}) == {"solo": 1}


async def test_debounce_runs_once_with_the_last_input_after_the_quiet_period(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    workers.start(APP, **STEADY)
    limit = Limit(key="search", debounce=0.6)
    ids = []
    for i in range(5):
        h = await fclient.enqueue(
            e2e_flow_app.keyed_work, {"log": str(log), "tenant": "search", "n": i}, limit=limit
        )
        ids.append(h.id)
        last = time.time()
        await anyio.sleep(0.15)
    assert len(set(ids)) == 1  # every enqueue got the one pending job's handle
    result = await h.result(timeout=30)
    assert result["n"] == 4  # the last input
    [(_, _, t, _, _)] = [r for r in read_log(log) if r[0] == "start"]
    assert t >= last + 0.55, t - last  # after the quiet period since the last enqueue


async def test_throttle_keeps_the_first_job_of_each_window(
    workers: WorkerPool, fclient: Client, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    workers.start(APP, **STEADY)
    limit = Limit(key="report", throttle=1.5)
    args = [{"log": str(log), "tenant": "report", "n": i} for i in range(10)]
    opened = time.time()
    first = [await fclient.enqueue(e2e_flow_app.keyed_work, a, limit=limit) for a in args]
    assert len({h.id for h in first}) == 1
    assert (await first[0].result(timeout=30))["n"] == 0  # the first kept, the rest dropped
    await anyio.sleep(max(0.0, opened + 1.7 - time.time()))  # the window has closed
    again = await fclient.enqueue(
        e2e_flow_app.keyed_work, {"log": str(log), "tenant": "report", "n": 99}, limit=limit
    )
    assert again.id != first[0].id
    assert (await again.result(timeout=30))["n"] == 99
    assert sorted(n for what, *_, n in read_log(log) if what == "start") == [0, 99]
