"""Cost of activity queues on the store's work-item path: N work items committed by turns of
N/100 instances (100 items each), then fetched in batches of 128 (the fetch script alone is
timed; one ack per batch, untimed: acks do not read the queue), on a private Redis flushed
between runs. Cases: "default"; "gpu" fetched by a worker serving ("gpu",); "gpu" by one
serving ("a", "b", "gpu") (two empty queues checked on every fetch); "default" with a priority
on every item; "default" with a flow key on every item (docs/routing.md: 100 keys with a
concurrency limit of 1,000 each, never reached; or a key per item, no limit). ``-r`` runs the
cases in reverse order.

    .venv/bin/python benchmarks/work_queue_bench.py [N] [-r]

Runs on older code too (the routed cases are skipped when NewWorkItem has no queue field).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid

import anyio

from durable_redis.devtools import RedisServer
from durable_redis.storage import (
    InstanceCreate,
    InstanceStatus,
    NewWorkItem,
    RedisStore,
    TurnCommit,
)

ROUTED = "queue" in {f.name for f in dataclasses.fields(NewWorkItem)}
KEYED = "flow_key" in {f.name for f in dataclasses.fields(NewWorkItem)}


async def run(
    url: str, n: int, queue: str, served: tuple[str, ...], priority: bool, keys: str = ""
) -> float:
    store = RedisStore.from_url(url, namespace=f"wqb-{uuid.uuid4().hex[:6]}")
    await store.initialize()
    try:
        for b in range(n // 100):
            iid = f"i{b}"
            await store.create_instance(iid, InstanceCreate(name="wf", version=""), f"s-{iid}", b"")
            lease = await store.fetch_orchestration(lock_ms=30_000)
            assert lease is not None
            route = {"queue": queue, "priority": b % 7} if ROUTED else {}
            if ROUTED and not priority:
                route["priority"] = 0
            items = [NewWorkItem(f"1:{k}", b"x", **route) for k in range(100)]  # type: ignore[arg-type]
            if keys == "100":
                items = [
                    dataclasses.replace(w, flow_key=f"t{k}", flow="1000 - - 1")
                    for k, w in enumerate(items)
                ]
            elif keys == "each":
                items = [
                    dataclasses.replace(w, flow_key=f"u{b}:{k}", flow="- - - 1")
                    for k, w in enumerate(items)
                ]
            commit = TurnCommit(
                execution_id=1,
                expected_history_len=len(lease.history),
                events=[b"e"],
                status=InstanceStatus.RUNNING,
                work_items=items,
            )
            await store.commit_turn(lease, commit)
        kwargs = {"queues": served} if ROUTED else {}
        spent, done = 0.0, 0
        while done < n:
            t0 = time.perf_counter()
            got = await store.fetch_work_items("w", limit=128, lock_ms=30_000, **kwargs)  # type: ignore[arg-type]
            spent += time.perf_counter() - t0
            assert got, "the queue ran dry early"
            for item in got[:1]:  # one ack per batch keeps the path honest, untimed
                await store.ack_work_item(item, f"d-{item.instance_id}-{item.activity_key}", b"")
            done += len(got)
        return n / spent
    finally:
        await store._redis.flushall()  # a private server: each run starts empty
        await store.close()


async def main(n: int) -> None:
    cases = [("default", "default", ("default",), False, "")]
    if ROUTED:
        cases += [
            ("gpu", "gpu", ("gpu",), False, ""),
            ("gpu of a,b,gpu", "gpu", ("a", "b", "gpu"), False, ""),
            ("default+priority", "default", ("default",), True, ""),
        ]
    if KEYED:
        cases += [
            ("default+100 keys", "default", ("default",), False, "100"),
            ("default+key each", "default", ("default",), False, "each"),
        ]
    with RedisServer() as server:
        for label, queue, served, priority, keys in cases[::-1] if "-r" in sys.argv else cases:
            rates = [await run(server.url, n, queue, served, priority, keys) for _ in range(3)]
            print(f"{label:<17} fetch {max(rates):>9,.0f} items/s (best of 3, n={n})")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "-r"]
    anyio.run(main, int(args[0]) if args else 5_000)
