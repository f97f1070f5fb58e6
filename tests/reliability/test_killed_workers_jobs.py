"""Jobs under killed workers: SIGKILL one of 3 worker processes every 2 s (and start a
replacement) while they drain background jobs.

Every job completes with its own result, none is lost, each completion is recorded once (every
recorded completion is announced once on the partition's completion channel: the test counts
the announcements per job), and jobs run again only when they were in flight at a kill.

Size: 2,000 jobs by default (well under a minute here); ``DURABLE_REDIS_RELIABILITY_JOBS=10000``
(or ``DURABLE_REDIS_RELIABILITY_FULL=1``) runs the issue's 10,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from rel_support import full_size, record_figures

from durable_redis.client import Client
from durable_redis.storage.jobs import parse_ended
from durable_redis.storage.keys import PartitionKeys

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]

LIVE_WORKERS = 3
KILL_EVERY_S = 2.0


def job_count() -> int:
    if os.environ.get("DURABLE_REDIS_RELIABILITY_JOBS"):
        return int(os.environ["DURABLE_REDIS_RELIABILITY_JOBS"])
    return 10_000 if full_size() else 2_000


async def test_jobs_survive_a_sigkill_every_two_seconds(
    pools: Any, redis_url: str, namespace: str, rel_client: Client, workdir: Path
) -> None:
    n = job_count()
    announced: Counter[str] = Counter()
    listener = aioredis.Redis.from_url(redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(PartitionKeys(namespace, 0).jq_done)

    async def listen() -> None:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None and msg["type"] == "message":
                for job_id, _, state, _ in parse_ended(msg["data"]):
                    announced[job_id] += 1
                    assert state.value == "completed", (job_id, state)

    pool = pools(redis_url, namespace)
    options = {"job_concurrency": 16, "job_batch_size": 16, "max_attempts": 50}
    args = [{"dir": str(workdir), "i": i, "sleep": 0.1} for i in range(n)]
    ids = [f"job-{i}" for i in range(n)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        await rel_client.enqueue_many("record_job", args, job_ids=ids)
        live = [pool.start("rel_app:app", **options) for _ in range(LIVE_WORKERS)]
        started = time.monotonic()
        kills = 0
        rng = random.Random(14)
        next_kill = started + KILL_EVERY_S
        store: Any = rel_client.store
        while True:
            done = (await store.job_counts())[next(iter(_terminal()))]
            if done >= n:
                break
            assert time.monotonic() - started < 240, f"{done}/{n} jobs done after 240 s"
            if time.monotonic() >= next_kill:
                victim = live.pop(rng.randrange(len(live)))
                victim.kill()
                kills += 1
                live.append(pool.start("rel_app:app", **options))
                next_kill += KILL_EVERY_S
            await anyio.sleep(0.05)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.3)  # the last announcements reach the listener
        tg.cancel_scope.cancel()
    with contextlib.suppress(Exception):
        await pubsub.aclose()
        await listener.aclose()

    lines = (workdir / "job_executions.log").read_text().splitlines()
    runs: Counter[str] = Counter(line.split(" ")[0] for line in lines)
    first: dict[str, float] = {}
    recoveries = []
    for line in lines:
        job_id, _pid, at = line.split(" ")
        if job_id in first:
            recoveries.append(float(at) - first[job_id])
        else:
            first.setdefault(job_id, float(at))
    wrong = lost = failed = 0
    for i, job_id in enumerate(ids):
        status = await (await rel_client.get_job(job_id)).status()
        if status.state.value != "completed":
            failed += 1
            continue
        result = await (await rel_client.get_job(job_id)).result(timeout=1)
        wrong += result["i"] != i
        lost += runs[job_id] == 0
    recorded_twice = sum(1 for c in announced.values() if c > 1)
    not_announced = sum(1 for j in ids if announced[j] == 0)
    repeated = sum(c - 1 for c in runs.values())
    record_figures(
        "killed_workers_jobs",
        {
            "jobs": n,
            "kills": kills,
            "lost": lost,
            "failed": failed,
            "wrong_result": wrong,
            "recorded_twice": recorded_twice,
            "not_announced": not_announced,
            "executions": sum(runs.values()),
            "repeated_executions": repeated,
            "recovery_s_median": round(statistics.median(recoveries), 2) if recoveries else None,
            "recovery_s_max": round(max(recoveries), 2) if recoveries else None,
            "elapsed_s": round(elapsed, 1),
            "lock_timeout_s": 2.0,
        },
    )
    assert lost == 0 and failed == 0 and wrong == 0
    assert recorded_twice == 0 and not_announced == 0
    assert kills >= 3
    # repeats only for jobs in flight at a kill: at most one batch per worker per kill
    assert repeated <= kills * 16, (repeated, kills)


def _terminal() -> list[Any]:
    from durable_redis.storage.job_types import JobState

    return [JobState.COMPLETED]


async def test_a_stalled_workers_late_job_acks_are_refused(
    pools: Any, redis_url: str, namespace: str, rel_client: Client, workdir: Path
) -> None:
    """SIGSTOP a worker holding 8 jobs past its 2 s lease; another worker runs them; after
    SIGCONT the zombie's acks are refused by the fenced token: the results stay the live
    worker's, each announced once."""
    import signal

    pool = pools(redis_url, namespace)
    options = {"job_concurrency": 8, "job_batch_size": 8, "activity_threads": 8}
    args = [{"dir": str(workdir), "i": i, "sleep": 1.0} for i in range(8)]
    ids = [f"stall-{i}" for i in range(8)]
    zombie = pool.start("rel_app:app", **options)
    await rel_client.enqueue_many("record_job", args, job_ids=ids)
    log = workdir / "job_executions.log"
    with anyio.fail_after(30):
        while not log.exists() or len(log.read_text().splitlines()) < 8:
            await anyio.sleep(0.02)
    os.kill(zombie.pid, signal.SIGSTOP)
    try:
        live = pool.start("rel_app:app", **options)
        results = [await (await rel_client.get_job(j)).result(timeout=30) for j in ids]
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
    assert {r["pid"] for r in results} == {live.pid}

    def refused() -> set[str]:
        # its late acks, or (if its renewal ran first) its renewals: both refused by the token
        found = re.findall(
            r"(?:late job completion dropped: the lease of|job lease lost \(cancelled, or "
            r"expired\):) (stall-\d+)",
            zombie.log(),
        )
        return set(found)

    with anyio.fail_after(20):  # the zombie wakes and reports back: every report refused
        while refused() != set(ids):
            await anyio.sleep(0.1)
    after = [await (await rel_client.get_job(j)).result(timeout=1) for j in ids]
    assert after == results
    record_figures("stalled_worker_jobs", {"jobs": 8, "refused": len(refused())})
