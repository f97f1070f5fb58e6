"""Redis out of memory (G18): ``maxmemory`` reached under ``noeviction`` while 2 worker processes
run orchestrations. Client calls that write raise ``StoreFullError`` (Redis's OOM reply, mapped
in one place), reads keep working, the workers stay up, the invariant checker
(``rel_invariants.store_invariants``) finds no partial write while Redis is full and none after;
once ``maxmemory`` is raised every orchestration completes with its result, nothing lost.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import rel_app
from rel_invariants import store_invariants
from rel_support import execution_counts, history_check, record_figures

from durable_redis.client import Client
from durable_redis.devtools import RedisServer
from durable_redis.errors import StoreFullError

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(180)]

ORCHESTRATIONS = 20
PER_ORCHESTRATION = 20
FULL_FOR_S = 3.0


def fill(admin: redis.Redis) -> int:
    """Write 4 MB of ballast keys, then set ``maxmemory`` 1 MB under what is used (policy
    ``noeviction``): every write is refused from then on, whatever else frees a little memory.
    Returns the ballast keys written."""
    n = 200
    for k in range(n):
        admin.set(f"ballast:{k}", b"x" * 20_000)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 1_000_000)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        admin.set("ballast:probe", b"x")
    return n


async def test_out_of_memory_raises_store_full_and_writes_nothing_partial(
    pools: Any, namespace: str, workdir: Path
) -> None:
    server = RedisServer().start()
    admin = redis.Redis.from_url(server.url)
    try:
        url = server.url
        pool = pools(url, namespace)
        workers = [pool.start("rel_app:app", activity_concurrency=8) for _ in range(2)]
        async with Client.from_url(url, namespace=namespace, app=rel_app.app) as client:
            args = {"dir": str(workdir), "n": PER_ORCHESTRATION, "batch": 2, "sleep": 0.02}
            ids = [
                await client.start("fanout", args, instance_id=f"oom-{i}")
                for i in range(ORCHESTRATIONS)
            ]
            deadline = time.monotonic() + 60
            while not execution_counts(workdir):  # mid-run: work in flight
                assert time.monotonic() < deadline
                await anyio.sleep(0.05)
            ballast = fill(admin)
            full_at = time.monotonic()
            refused: dict[str, str] = {}
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "start": lambda: client.start("echo", 1, instance_id="oom-late"),
                "raise_event": lambda: client.raise_event(ids[0], "e", 1),
                "enqueue": lambda: client.enqueue("record_job", {"dir": str(workdir), "i": 0}),
                "cancel": lambda: client.cancel(ids[-1]),
            }
            for name, call in calls.items():
                with pytest.raises(StoreFullError) as info:
                    await call()
                refused[name] = type(info.value).__name__
            readable = await client.get_status(ids[0]) is not None
            await anyio.sleep(FULL_FOR_S)  # the workers hit it too
            problems_full = store_invariants(url, namespace)
            alive_full = [w.alive() for w in workers]
            admin.config_set("maxmemory", 0)
            raised_at = time.monotonic()
            expected = sum(range(PER_ORCHESTRATION))
            results = [await client.wait_for_completion(iid, timeout=90) for iid in ids]
            done_s = time.monotonic() - raised_at
            counts = [history_check(await client.get_history(iid)) for iid in ids]
            problems_after = store_invariants(url, namespace)
        runs = execution_counts(workdir)
        log = pool.logs()
        record_figures(
            "out_of_memory",
            {
                "orchestrations": ORCHESTRATIONS,
                "activities": ORCHESTRATIONS * PER_ORCHESTRATION,
                "ballast_keys": ballast,
                "full_for_s": round(raised_at - full_at, 1),
                "client_calls_refused": refused,
                "reads_while_full": readable,
                "workers_alive_while_full": alive_full,
                "worker_oom_log_lines": log.count("out of memory"),
                "invariant_violations_full": problems_full[:5],
                "invariant_violations_after": problems_after[:5],
                "lost": sum(1 for r in results if r != expected),
                "recorded_twice": sum(c["completed_twice"] for c in counts),
                "repeated_executions": sum(n - 1 for n in runs.values()),
                "done_after_raise_s": round(done_s, 2),
            },
        )
    finally:
        admin.close()
        server.stop()
    assert set(refused.values()) == {"StoreFullError"}
    assert readable and all(alive_full)
    assert problems_full == [] and problems_after == [], (problems_full[:5], problems_after[:5])
    assert results == [expected] * ORCHESTRATIONS
    assert all(c["completed_twice"] == 0 and c["dense_ids"] == 1 for c in counts)
    assert all(w.alive() for w in workers)


@pytest.mark.timeout(60)
async def test_the_invariant_checker_finds_partial_writes(
    redis_url: str, namespace: str, rel_client: Client
) -> None:
    """The checker is not blind: each half-done change it must catch, it catches."""
    from durable_redis.storage.keys import PartitionKeys

    await rel_client.start("echo", 1, instance_id="inv-a")
    await rel_client.start("echo", 2, instance_id="inv-b")
    assert store_invariants(redis_url, namespace) == []
    pk = PartitionKeys(namespace, 0)
    r = redis.Redis.from_url(redis_url)
    try:
        r.hset(pk.oq_lock, "inv-a", "1:x")  # a lock token without its deadline
        r.zrem(pk.idx_status("pending"), "inv-b")  # a record out of its status index
        r.hset(pk.wq_items, "inv-a\n1:1|d", b"x")  # an item in no queue, half written
        r.zadd(pk.wq_ready, {"ghost": 1})  # a queue member that is no item
    finally:
        r.close()
    found = "\n".join(store_invariants(redis_url, namespace))
    assert "half locks" in found
    assert "'inv-b' has status 'pending', indexed as []" in found
    assert "item 'inv-a\\n1:1' lacks" in found and "is in no queue" in found
    assert "ready[default] names 'ghost'" in found
