"""Cost per commit of the script modes and durability modes, on a primary + replica it starts
itself (TCP loopback): one client, sequential calls, so each figure is one call's latency.

For each of ``eval`` (EVALSHA), ``functions`` (FCALL) x ``async``, ``replicated`` (WAIT 1),
``replicated_aof`` (WAITAOF 0 1, the replica with AOF ``everysec``; only ``--aof-n`` calls: the
replica reports its fsynced offset about once a second, so each WAITAOF takes up to ~1 s): the
median and p99 of ``commit_turn`` (a two-event turn) and of ``create_instance``.

Usage:  .venv/bin/python benchmarks/durability_cost.py [--n 300] [--aof-n 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from durable_redis.devtools import RedisServer
from durable_redis.storage import (
    InstanceCreate,
    InstanceStatus,
    RedisStore,
    TurnCommit,
)
from durable_redis.storage.functions import load_library


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


async def measure(url: str, scripts: str, durability: str, n: int) -> dict[str, float]:
    store = RedisStore.from_url(
        url,
        namespace=f"cost-{uuid.uuid4().hex[:8]}",
        scripts=scripts,
        durability=durability,
        replica_timeout=2.0,
    )
    await store.initialize()
    creates, commits = [], []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            await store.create_instance(f"i{i}", InstanceCreate(name="wf"), f"s{i}", b"x" * 64)
            creates.append(time.perf_counter() - t0)
            lease = await store.fetch_orchestration(lock_ms=30_000)
            assert lease is not None
            commit = TurnCommit(
                execution_id=1,
                expected_history_len=len(lease.history),
                events=[b"e" * 100, b"f" * 100],
                status=InstanceStatus.RUNNING,
            )
            t0 = time.perf_counter()
            await store.commit_turn(lease, commit)
            commits.append(time.perf_counter() - t0)
        assert store._fcall == (scripts == "functions")
    finally:
        await store.close()
    return {
        "commit_p50_ms": _pct(commits, 0.5),
        "commit_p99_ms": _pct(commits, 0.99),
        "create_p50_ms": _pct(creates, 0.5),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--aof-n", type=int, default=5)
    options = parser.parse_args()
    with RedisServer(unix_socket=False, persistence=True) as primary:
        replica = RedisServer(
            unix_socket=False,
            persistence=True,
            extra_args=("--replicaof", "127.0.0.1", str(primary.port)),
        )
        with replica:
            r = redis.Redis.from_url(replica.url)
            while r.info("replication").get("master_link_status") != "up":
                time.sleep(0.05)
            r.close()
            admin = redis.asyncio.Redis.from_url(primary.url)
            await load_library(admin)
            await admin.aclose()
            print(f"{'scripts':<10} {'durability':<15} commit p50  p99 ms   create p50 ms")
            for scripts in ("eval", "functions"):
                for durability in ("async", "replicated", "replicated_aof"):
                    n = options.aof_n if durability == "replicated_aof" else options.n
                    got = await measure(primary.url, scripts, durability, n)
                    print(
                        f"{scripts:<10} {durability:<15} {got['commit_p50_ms']:8.2f} "
                        f"{got['commit_p99_ms']:6.2f}   {got['create_p50_ms']:8.2f}"
                    )


if __name__ == "__main__":
    asyncio.run(main())
