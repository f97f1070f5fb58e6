"""A stalled worker (SIGSTOP past its lease, then SIGCONT) and a partitioned one (a loopback TCP
proxy that stops forwarding) must look the same from outside: the work it held moves to another
worker after the lease, its late renewals, acks and commits are refused by the fenced token, and
nothing is recorded twice. When it comes back it serves again, without a restart.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from tests.e2e.e2e_helpers import eventually
from tests.reliability.rel_proxy import Proxy
from tests.reliability.rel_support import (
    execution_counts,
    executions,
    history_check,
    record_figures,
    scheduled_ids,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(180)]

ORCHESTRATIONS = 20
PER_ORCHESTRATION = 10
FAULT_S = 6.0  # three times the 2 s lease
REFUSALS = ("late completion dropped", "activity lease lost", "not committed: its lease was lost")


async def _isolate_one_worker(
    name: str,
    pools: Any,
    redis_url: str,
    isolated_url: str,
    namespace: str,
    client: Client,
    workdir: Path,
    fault: Callable[[int], Awaitable[None]],
    resume: Callable[[int], Awaitable[None]],
) -> None:
    pool = pools(redis_url, namespace)
    isolated_pool = pools(isolated_url, namespace)
    a = isolated_pool.start("rel_app:app", activity_concurrency=8, max_attempts=50)
    b = pool.start("rel_app:app", activity_concurrency=8, max_attempts=50)
    args = {"dir": str(workdir), "n": PER_ORCHESTRATION, "batch": 5, "sleep": 0.3}
    ids = [
        await client.start("fanout", args, instance_id=f"{name}-{i}") for i in range(ORCHESTRATIONS)
    ]

    def a_running() -> bool:
        return sum(1 for row in executions(workdir) if row[2] == a.pid) >= 3

    await eventually(a_running, timeout=60, message="worker A running activities")
    fault_at = time.time()
    await fault(a.pid)
    try:
        await anyio.sleep(FAULT_S)
    finally:
        await resume(a.pid)
    resumed_at = time.time()
    expected = sum(range(PER_ORCHESTRATION))
    for iid in ids:
        assert await client.wait_for_completion(iid, timeout=90) == expected

    runs = execution_counts(workdir)
    lost = recorded_twice = 0
    for iid in ids:
        history = await client.get_history(iid)
        counts = history_check(history)
        assert counts["completed"] == counts["scheduled"] == PER_ORCHESTRATION, counts
        assert counts["dense_ids"] == 1 and counts["failed"] == 0, counts
        recorded_twice += counts["completed_twice"] + counts["unscheduled_completions"]
        lost += sum(1 for aid in scheduled_ids(history) if runs[(iid, aid)] == 0)
    # Items A held when isolated ran again elsewhere: how long after the fault?
    first: dict[tuple[str, int], tuple[int, float]] = {}
    moved = []
    for run_iid, aid, pid, at in executions(workdir):
        key = (run_iid, aid)
        if key not in first:
            first[key] = (pid, at)
        elif first[key][0] == a.pid and pid != a.pid:
            moved.append(at - fault_at)
    assert moved, "no work moved away from the isolated worker"

    # A is back: alive, and it serves new work without a restart.
    assert a.alive()
    more = [
        await client.start("fanout", {**args, "sleep": 0.05}, instance_id=f"{name}-after-{i}")
        for i in range(6)
    ]
    before = len(executions(workdir))
    for iid in more:
        assert await client.wait_for_completion(iid, timeout=60) == expected
    after_rows = executions(workdir)[before:]
    assert any(pid == a.pid for _, _, pid, _ in after_rows), "isolated worker never served again"
    refusals = sum(a.log().count(text) for text in REFUSALS)
    record_figures(
        name,
        {
            "activities": ORCHESTRATIONS * PER_ORCHESTRATION,
            "fault_s": FAULT_S,
            "lock_timeout_s": 2.0,
            "lost": lost,
            "recorded_twice": recorded_twice,
            "repeated_executions": sum(n - 1 for n in runs.values()),
            "moved_items": len(moved),
            "recovery_s_first_move": round(min(moved), 2),
            "fenced_refusals_logged": refusals,
            "resumed_after_s": round(resumed_at - fault_at, 2),
        },
    )
    assert lost == 0 and recorded_twice == 0
    assert min(moved) >= 1.5, "work moved before the lease expired"
    # The isolated worker came back with work in flight whose leases were gone: it was refused.
    assert refusals >= 1, a.log()[-3000:]
    b.terminate()
    assert b.wait(30) == 0


async def test_stalled_worker_sigstop_past_its_lease(
    pools: Any, redis_url: str, namespace: str, rel_client: Client, workdir: Path
) -> None:
    async def stop(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)

    async def cont(pid: int) -> None:
        os.kill(pid, signal.SIGCONT)

    await _isolate_one_worker(
        "stalled_worker", pools, redis_url, redis_url, namespace, rel_client, workdir, stop, cont
    )


async def test_partitioned_worker_behind_a_silent_proxy(
    pools: Any,
    redis_server: Any,
    redis_url: str,
    namespace: str,
    rel_client: Client,
    workdir: Path,
) -> None:
    proxy = await Proxy(unix_path=redis_server.socket_path).start()

    async def cut(pid: int) -> None:
        proxy.partition()

    async def heal(pid: int) -> None:
        proxy.heal()

    try:
        await _isolate_one_worker(
            "partitioned_worker",
            pools,
            redis_url,
            proxy.url,
            namespace,
            rel_client,
            workdir,
            cut,
            heal,
        )
    finally:
        proxy.heal()
        await proxy.close()
