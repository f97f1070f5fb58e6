"""Scripts flushed mid-run (G12): ``SCRIPT FLUSH`` every 0.1 s while 2 worker processes run
orchestrations and jobs. Every script call goes through EVALSHA with a NOSCRIPT fallback that
reloads the script, so no work fails, nothing is lost or recorded twice, and no worker logs an
error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from durable_redis.client import Client
from tests.reliability.rel_support import (
    execution_counts,
    history_check,
    record_figures,
    worker_errors,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(120)]

ORCHESTRATIONS = 40
PER_ORCHESTRATION = 20
JOBS = 200
FLUSH_EVERY_S = 0.1


async def script_loads(r: Any) -> int:
    """SCRIPT LOAD calls so far (``cmdstat_script`` on 6.x, ``cmdstat_script|load`` on 7+)."""
    stats = await r.info("commandstats")
    return int(stats.get("cmdstat_script|load", stats.get("cmdstat_script", {})).get("calls", 0))


async def test_script_flush_mid_run_fails_no_work(
    pools: Any, redis_url: str, namespace: str, rel_client: Client, workdir: Path
) -> None:
    pool = pools(redis_url, namespace)
    workers = [pool.start("rel_app:app", activity_concurrency=8) for _ in range(2)]
    r = aioredis.Redis.from_url(redis_url)
    try:
        loads_before = await script_loads(r)
        args = {"dir": str(workdir), "n": PER_ORCHESTRATION, "batch": 5, "sleep": 0.01}
        ids = [
            await rel_client.start("fanout", args, instance_id=f"flush-{i}")
            for i in range(ORCHESTRATIONS)
        ]
        job_ids = [f"flush-job-{i}" for i in range(JOBS)]
        await rel_client.enqueue_many(
            "record_job",
            [{"dir": str(workdir), "i": i, "sleep": 0.05} for i in range(JOBS)],
            job_ids=job_ids,
        )
        started = time.monotonic()
        flushes = 0
        pending = set(ids)
        deadline = started + 90
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} orchestrations never finished"
            await r.script_flush()
            flushes += 1
            await anyio.sleep(FLUSH_EVERY_S)
            for iid in list(pending):
                state = await rel_client.get_status(iid)
                if state is not None and state.is_terminal:
                    pending.discard(iid)
        done_s = time.monotonic() - started
        reloads = await script_loads(r) - loads_before
    finally:
        await r.aclose()

    recorded_twice = failed = 0
    for iid in ids:
        assert await rel_client.wait_for_completion(iid, timeout=5) == sum(range(PER_ORCHESTRATION))
        counts = history_check(await rel_client.get_history(iid))
        recorded_twice += counts["completed_twice"]
        failed += counts["failed"]
    for i, job_id in enumerate(job_ids):
        result = await (await rel_client.get_job(job_id)).result(timeout=30)
        assert result["i"] == i
    repeated = sum(n - 1 for n in execution_counts(workdir).values())
    errors = worker_errors(pool.logs())
    record_figures(
        "script_flush",
        {
            "orchestrations": ORCHESTRATIONS,
            "activities": ORCHESTRATIONS * PER_ORCHESTRATION,
            "jobs": JOBS,
            "workers": len(workers),
            "flushes": flushes,
            "script_loads": reloads,
            "lost": 0,
            "failed": failed,
            "recorded_twice": recorded_twice,
            "repeated_executions": repeated,
            "error_lines": len(errors),
            "done_s": round(done_s, 1),
        },
    )
    assert all(w.alive() for w in workers)
    assert failed == 0 and recorded_twice == 0
    assert flushes >= 3, flushes
    assert reloads > 0
    assert errors == [], errors[:5]
