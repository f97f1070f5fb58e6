"""Killed Redis: ``redis-server`` with AOF ``everysec`` is SIGKILLed mid-run and restarted on the
same socket and directory. Workers and the client reconnect by themselves (no restart, no error
surfaced to the caller), no orchestration the client saw complete is lost, and the run finishes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from rel_support import (
    execution_counts,
    executions,
    history_check,
    kill_server,
    record_figures,
    scheduled_ids,
)

from durable_redis.client import Client
from durable_redis.devtools.server import RedisServer
from durable_redis.storage.base import InstanceStatus

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(240)]

ORCHESTRATIONS = 60
PER_ORCHESTRATION = 10
DOWN_S = 1.5


@pytest.fixture
def aof_dir(tmp_path: Path) -> Path:
    d = tmp_path / "aof"
    d.mkdir()
    return d


async def test_redis_sigkill_and_restart_with_aof_everysec(
    pools: Any, namespace: str, workdir: Path, aof_dir: Path
) -> None:
    import rel_app

    servers = [RedisServer(persistence=True, directory=str(aof_dir)).start()]
    try:
        url = servers[0].url
        pool = pools(url, namespace)
        workers = [pool.start("rel_app:app", activity_concurrency=8) for _ in range(2)]
        async with Client.from_url(url, namespace=namespace, app=rel_app.app) as client:
            args = {"dir": str(workdir), "n": PER_ORCHESTRATION, "batch": 2, "sleep": 0.05}
            ids = [
                await client.start("fanout", args, instance_id=f"aof-{i}")
                for i in range(ORCHESTRATIONS)
            ]
            expected = sum(range(PER_ORCHESTRATION))
            seen_complete: dict[str, Any] = {}
            deadline = time.monotonic() + 90
            while len(seen_complete) < ORCHESTRATIONS // 6:
                assert time.monotonic() < deadline, "no progress before the kill"
                for iid in ids:
                    if iid not in seen_complete:
                        state = await client.get_status(iid)
                        if state is not None and state.status is InstanceStatus.COMPLETED:
                            seen_complete[iid] = state.output
                await anyio.sleep(0.05)

            # Kill Redis (no shutdown, no final fsync) while a caller keeps asking.
            caller_errors: list[BaseException] = []
            calls_during_outage = 0

            async def keep_asking() -> None:
                nonlocal calls_during_outage
                while True:
                    try:
                        await client.get_status(ids[-1])
                        calls_during_outage += 1
                    except Exception as exc:
                        caller_errors.append(exc)
                    await anyio.sleep(0.1)

            killed_at = time.time()
            kill_server(servers[0])
            async with anyio.create_task_group() as tg:
                tg.start_soon(keep_asking)
                await anyio.sleep(DOWN_S)
                servers.append(RedisServer(persistence=True, directory=str(aof_dir)).start())
                restarted_at = time.time()
                await anyio.sleep(1.0)
                tg.cancel_scope.cancel()
            assert servers[1].url == url

            for iid in ids:
                assert await client.wait_for_completion(iid, timeout=120) == expected
            finished_at = time.time()
            # Nothing the client saw complete was lost.
            for iid, output in seen_complete.items():
                state = await client.get_status(iid)
                assert state is not None and state.status is InstanceStatus.COMPLETED
                assert state.output == output
            runs = execution_counts(workdir)
            lost = recorded_twice = 0
            for iid in ids:
                history = await client.get_history(iid)
                counts = history_check(history)
                assert counts["completed"] == counts["scheduled"] == PER_ORCHESTRATION, counts
                assert counts["dense_ids"] == 1 and counts["failed"] == 0, counts
                recorded_twice += counts["completed_twice"] + counts["unscheduled_completions"]
                lost += sum(1 for aid in scheduled_ids(history) if runs[(iid, aid)] == 0)
        after = sorted(at for *_, at in executions(workdir) if at > restarted_at)
        recovery = (after[0] - restarted_at) if after else None
        # The workers were never restarted: the same processes served before and after.
        assert all(w.alive() for w in workers)
        pids_after = {pid for _, _, pid, at in executions(workdir) if at > restarted_at}
        assert pids_after <= {w.pid for w in workers}
        record_figures(
            "killed_redis",
            {
                "orchestrations": ORCHESTRATIONS,
                "activities": ORCHESTRATIONS * PER_ORCHESTRATION,
                "seen_complete_before_kill": len(seen_complete),
                "lost_seen_complete": 0,
                "lost": lost,
                "recorded_twice": recorded_twice,
                "repeated_executions": sum(n - 1 for n in runs.values()),
                "redis_down_s": round(restarted_at - killed_at, 2),
                "recovery_s_first_execution_after_restart": (
                    round(recovery, 2) if recovery is not None else None
                ),
                "finished_s_after_restart": round(finished_at - restarted_at, 1),
                "caller_errors_during_outage": len(caller_errors),
                "worker_restarts": 0,
            },
        )
        assert lost == 0 and recorded_twice == 0
        assert caller_errors == [], caller_errors
        for w in workers:
            w.terminate()
        for w in workers:
            assert w.wait(30) == 0
    finally:
        for server in servers:
            server.stop()
