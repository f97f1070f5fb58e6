"""Clock skew (G21): one of 3 worker processes runs with its wall clock 10 s ahead
(``skewed_clock/sitecustomize.py``, switched on by an environment variable only that worker
gets). Leases and timers are judged on the Redis clock inside the scripts, and a turn's time is
the server time at its fetch, so the skewed worker steals no live lease (no activity runs twice,
no worker ever loses a lease) and fires no timer early (each timer's continuation starts at or
after its due time, by the true clock), while doing its share of the work.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from durable_redis.client import Client
from tests.reliability import rel_app
from tests.reliability.rel_support import execution_counts, executions, record_figures

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(180)]

HERE = Path(__file__).resolve().parent
SKEW_S = 10.0
ORCHESTRATIONS = 30
TIMER_MS = 1500
LOST_LINES = ("late completion dropped", "activity lease lost", "lease lost")


async def test_a_worker_ten_seconds_ahead_steals_no_lease_and_fires_no_timer_early(
    pools: Any,
    redis_url: str,
    namespace: str,
    rel_client: Client,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = pools(redis_url, namespace)
    # a lock timeout of 5 s: well under the 10 s skew (a worker judging leases on its own clock
    # would see every live lease as expired), and renewals have slack on a loaded machine
    options = {"activity_concurrency": 8, "lock_timeout": 5.0}
    healthy = [pool.start("rel_app:app", **options) for _ in range(2)]
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    with monkeypatch.context() as m:
        m.setenv(rel_app.SKEW_ENV, str(SKEW_S))
        m.setenv("PYTHONPATH", os.pathsep.join([str(HERE / "skewed_clock"), *pythonpath]))
        skewed = pool.start("rel_app:app", **options)
    started = time.monotonic()
    args = {"dir": str(workdir), "sleep": 1.0, "timer_ms": TIMER_MS}
    ids = [
        await rel_client.start("skew_run", args, instance_id=f"skew-{i}")
        for i in range(ORCHESTRATIONS)
    ]
    results = [await rel_client.wait_for_completion(iid, timeout=120) for iid in ids]
    elapsed = time.monotonic() - started
    assert all(w.alive() for w in [*healthy, skewed])

    stamps = [line.split(" ") for line in (workdir / "stamps.log").read_text().splitlines()]
    early = [(iid, int(due) - int(true)) for iid, _, due, true, _ in stamps if int(true) < int(due)]
    skewed_stamps = [s for s in stamps if int(s[1]) == skewed.pid]
    own_clock_ahead = [(int(own) - int(true)) / 1000 for *_, true, own in skewed_stamps]
    runs = execution_counts(workdir)
    by_skewed = sum(1 for _, _, pid, _ in executions(workdir) if pid == skewed.pid)
    lost_lines = {w.pid: sum(w.log().count(x) for x in LOST_LINES) for w in [*healthy, skewed]}
    record_figures(
        "clock_skew",
        {
            "skew_s": SKEW_S,
            "orchestrations": ORCHESTRATIONS,
            "activities": 3 * ORCHESTRATIONS,
            "timers": len(stamps),
            "timers_early": len(early),
            "latest_early_ms": max((d for _, d in early), default=0),
            "repeated_executions": sum(n - 1 for n in runs.values()),
            "activities_run_by_skewed_worker": by_skewed + len(skewed_stamps),
            "leases_lost_per_worker": list(lost_lines.values()),
            "elapsed_s": round(elapsed, 1),
        },
    )
    assert results == [1 + 2] * ORCHESTRATIONS
    assert own_clock_ahead and all(abs(a - SKEW_S) < 1.0 for a in own_clock_ahead), (
        "the skew hook was not in effect",
        own_clock_ahead[:3],
    )
    assert by_skewed > 0, "the skewed worker ran nothing"
    assert not early, early[:5]
    assert all(n == 1 for n in runs.values()), [k for k, n in runs.items() if n > 1][:5]
    assert sum(lost_lines.values()) == 0, lost_lines
    assert len(stamps) == ORCHESTRATIONS
