"""Store benchmark against one local Redis that it starts itself (RedisServer, unix socket).

Measures:
  - orchestration turn commits/s (fetch + commit of a one-event turn, C concurrent clients)
  - activity fetch+ack/s with batch sizes 1 and 32 (C concurrent clients; ack is per item)
  - idle wake-up latency p50/p99: a fetch blocked on the marker, woken by an enqueue

Usage:  .venv/bin/python benchmarks/store_bench.py [--quick] [--concurrency 8] [--tcp]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from durable_redis.devtools import RedisServer
from durable_redis.storage import (
    InstanceCreate,
    InstanceStatus,
    NewWorkItem,
    RedisStore,
    TurnCommit,
)

LOCK = 30_000


async def stores(url: str, namespace: str, n: int) -> list[RedisStore]:
    out = [RedisStore.from_url(url, namespace=namespace) for _ in range(n)]
    for s in out:
        await s.initialize()
    return out


async def bench_turns(url: str, instances: int, concurrency: int) -> float:
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    clients = await stores(url, ns, concurrency)
    for i in range(instances):
        await clients[0].create_instance(f"i{i}", InstanceCreate(name="wf"), f"s{i}", b"x" * 64)
    done = 0

    async def worker(s: RedisStore) -> None:
        nonlocal done
        while True:
            lease = await s.fetch_orchestration(lock_ms=LOCK)
            if lease is None:
                return
            commit = TurnCommit(
                execution_id=1,
                expected_history_len=len(lease.history),
                events=[b"e" * 100, b"f" * 100],
                status=InstanceStatus.RUNNING,
            )
            await s.commit_turn(lease, commit)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in clients))
    elapsed = time.perf_counter() - t0
    assert done == instances, done
    for s in clients:
        await s.close()
    return done / elapsed


async def bench_activities(url: str, items: int, batch: int, concurrency: int) -> float:
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    clients = await stores(url, ns, concurrency)
    per_instance = 32
    for i in range(items // per_instance):
        s = clients[0]
        await s.create_instance(f"i{i}", InstanceCreate(name="wf"), f"s{i}", b"x")
        lease = await s.fetch_orchestration(lock_ms=LOCK)
        assert lease is not None
        work = [NewWorkItem(f"1:{k}", b"t" * 100) for k in range(per_instance)]
        await s.commit_turn(
            lease,
            TurnCommit(
                execution_id=1,
                expected_history_len=0,
                events=[b"e"],
                status=InstanceStatus.RUNNING,
                work_items=work,
            ),
        )
    total = (items // per_instance) * per_instance
    done = 0

    async def worker(s: RedisStore, wid: str) -> None:
        nonlocal done
        while True:
            got = await s.fetch_work_items(wid, limit=batch, lock_ms=LOCK)
            if not got:
                return
            for item in got:
                await s.ack_work_item(item, f"done-{item.activity_key}", b"r" * 100)
            done += len(got)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(s, f"w{n}") for n, s in enumerate(clients)))
    elapsed = time.perf_counter() - t0
    assert done == total, (done, total)
    for s in clients:
        await s.close()
    return done / elapsed


async def bench_wakeup(url: str, samples: int) -> tuple[float, float]:
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    waiter_store, sender = await stores(url, ns, 2)
    latencies: list[float] = []
    for i in range(samples):
        woke = asyncio.Event()
        sent_at = 0.0
        woke_at = 0.0

        async def waiter(woke: asyncio.Event = woke) -> None:
            nonlocal woke_at
            lease = await waiter_store.fetch_orchestration(lock_ms=LOCK, wait_ms=5_000)
            woke_at = time.perf_counter()
            assert lease is not None
            await waiter_store.commit_turn(
                lease,
                TurnCommit(
                    execution_id=1,
                    expected_history_len=len(lease.history),
                    events=[b"e"],
                    status=InstanceStatus.COMPLETED,
                ),
            )
            woke.set()

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.02)  # let it block on the marker
        sent_at = time.perf_counter()
        await sender.create_instance(f"i{i}", InstanceCreate(name="wf"), f"s{i}", b"x")
        await woke.wait()
        await task
        latencies.append((woke_at - sent_at) * 1000)
    await waiter_store.close()
    await sender.close()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return p50, p99


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tcp", action="store_true", help="loopback TCP instead of unix socket")
    opts = parser.parse_args()
    n_turns = 1_000 if opts.quick else 5_000
    n_items = 1_024 if opts.quick else 6_400
    samples = 50 if opts.quick else 200
    with RedisServer(unix_socket=not opts.tcp) as server:
        print(f"redis-server {server.executable} at {server.url}, concurrency {opts.concurrency}")
        turns = await bench_turns(server.url, n_turns, opts.concurrency)
        print(f"orchestration turns (fetch+commit): {turns:8.0f} /s  ({n_turns} turns)")
        for batch in (1, 32):
            rate = await bench_activities(server.url, n_items, batch, opts.concurrency)
            print(
                f"activity fetch+ack, batch {batch:2d}:    {rate:8.0f} items/s  ({n_items} items)"
            )
        p50, p99 = await bench_wakeup(server.url, samples)
        print(
            f"idle wake-up latency (enqueue -> fetch returns): p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
