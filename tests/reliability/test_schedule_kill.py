"""A schedule fires exactly once per tick across 3 worker processes while one of them is
SIGKILLed (and replaced): no scheduler process, no leader; the tick is claimed in Lua on the
Redis clock. Every tick between the first and the last has exactly one job, and it ran."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from rel_support import record_figures

from durable_redis.client import Client

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(120)]


async def test_one_run_per_tick_across_three_workers_with_a_kill(
    pools: Any, redis_url: str, namespace: str, rel_client: Client, workdir: Path
) -> None:
    pool = pools(redis_url, namespace)
    live = [pool.start("rel_app:app") for _ in range(3)]
    await rel_client.create_schedule(
        "tick", "record_tick", {"dir": str(workdir)}, every=1, overlap="allow"
    )
    log = workdir / "ticks.log"

    def lines() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    with anyio.fail_after(30):
        while len(lines()) < 3:
            await anyio.sleep(0.05)
    live.pop(0).kill()  # a worker dies between ticks or in the middle of one
    live.append(pool.start("rel_app:app"))
    with anyio.fail_after(30):
        while len(lines()) < 9:
            await anyio.sleep(0.05)
    await rel_client.delete_schedule("tick")
    await anyio.sleep(1.5)  # a job claimed just before the delete finishes
    jobs = await rel_client.list_jobs(name="record_tick", limit=1000)
    ticks = sorted(int(j.job_id.split(":")[2]) for j in jobs)
    per_tick = Counter(ticks)
    ran = Counter(line.split(" ")[0] for line in lines())
    pids = {line.split(" ")[1] for line in lines()}
    gaps = [b - a for a, b in itertools.pairwise(sorted(per_tick))]
    record_figures(
        "schedule_kill",
        {
            "ticks": len(per_tick),
            "jobs": len(jobs),
            "max_jobs_per_tick": max(per_tick.values()),
            "gaps_ms": sorted(set(gaps)),
            "executions": sum(ran.values()),
            "worker_pids_that_ran_ticks": len(pids),
            "recorded_at_unix": round(time.time()),
        },
    )
    assert max(per_tick.values()) == 1  # one job per tick
    assert set(gaps) == {1000}  # no tick missed while a worker died
    assert all(j.state.value == "completed" for j in jobs)
    assert all(ran[j.job_id] >= 1 for j in jobs)
