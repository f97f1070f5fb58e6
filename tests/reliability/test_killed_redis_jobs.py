"""Killed Redis, jobs: ``redis-server`` with AOF ``everysec`` is SIGKILLed while 2 workers
drain 300 jobs, and restarted on the same socket and directory 1.5 s later. No acknowledged
enqueue is lost (all were acknowledged more than the 1 s fsync interval before the kill), no
result the client saw is lost, every job ends with its own result, the workers carry on without
a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from rel_support import kill_server, record_figures

from durable_redis.client import Client
from durable_redis.devtools.server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(240)]

JOBS = 300
DOWN_S = 1.5


async def test_redis_sigkill_loses_no_acknowledged_enqueue(
    pools: Any, namespace: str, workdir: Path, tmp_path: Path
) -> None:
    aof = tmp_path / "aof"
    aof.mkdir()
    servers = [RedisServer(persistence=True, directory=str(aof)).start()]
    try:
        url = servers[0].url
        async with Client.from_url(url, namespace=namespace) as client:
            ids = [f"aof-job-{i}" for i in range(JOBS)]
            args = [{"dir": str(workdir), "i": i, "sleep": 0.02} for i in range(JOBS)]
            await client.enqueue_many("record_job", args, job_ids=ids)
            await anyio.sleep(1.5)  # past the AOF fsync interval: these are on disk
            pool = pools(url, namespace)
            opts = {"job_concurrency": 4, "activity_threads": 4}
            workers = [pool.start("rel_app:app", **opts) for _ in range(2)]
            seen: set[str] = set()
            deadline = time.monotonic() + 60
            while len(seen) < JOBS // 6:
                assert time.monotonic() < deadline, "no progress before the kill"
                seen |= {s.job_id for s in await client.list_jobs(status="completed", limit=JOBS)}
                await anyio.sleep(0.05)
            seen_results = {j: await (await client.get_job(j)).result(timeout=1) for j in seen}
            killed_at = time.time()
            kill_server(servers[0])
            await anyio.sleep(DOWN_S)
            servers.append(RedisServer(persistence=True, directory=str(aof)).start())
            restarted_at = time.time()
            assert servers[1].url == url
            results = {}
            for i, job_id in enumerate(ids):
                results[job_id] = await (await client.get_job(job_id)).result(timeout=120)
                assert results[job_id]["i"] == i
            finished_at = time.time()
            lost_seen = sum(1 for j, r in seen_results.items() if results[j] != r)
        assert all(w.alive() for w in workers)  # never restarted
        record_figures(
            "killed_redis_jobs",
            {
                "jobs": JOBS,
                "seen_complete_before_kill": len(seen),
                "lost_enqueues": 0,
                "lost_seen_results": lost_seen,
                "redis_down_s": round(restarted_at - killed_at, 2),
                "finished_s_after_restart": round(finished_at - restarted_at, 1),
                "worker_restarts": 0,
            },
        )
        assert lost_seen == 0
        for w in workers:
            w.terminate()
        for w in workers:
            assert w.wait(30) == 0
    finally:
        for server in servers:
            server.stop()
