"""Cost of job queues on the store's fetch/ack path: N jobs enqueued (enqueue_many-sized
batches), then fetched (batches of 128) and acked, on a private Redis; once on "default" served
alone, once on "gpu" by a fetch serving ("gpu",) and once by one serving ("a", "b", "gpu") (two
empty queues checked on every fetch).

    .venv/bin/python benchmarks/queue_bench.py [N]
"""

from __future__ import annotations

import sys
import time
import uuid

import anyio

from durable_redis.devtools import RedisServer
from durable_redis.storage import RedisStore
from durable_redis.storage.job_types import JobAck, JobOutcome, NewJob


async def run(url: str, n: int, queue: str, served: tuple[str, ...]) -> float:
    store = RedisStore.from_url(url, namespace=f"qb-{uuid.uuid4().hex[:6]}")
    await store.initialize()
    try:
        jobs = [NewJob(f"j{i}", "work", b"x", queue=queue) for i in range(n)]
        for start in range(0, n, 1000):
            await store.enqueue_jobs(jobs[start : start + 1000])
        t0 = time.perf_counter()
        done = 0
        while done < n:
            leases = await store.fetch_jobs("w", limit=128, lock_ms=30_000, queues=served)
            await store.ack_jobs([JobAck(x, JobOutcome.COMPLETED, b"") for x in leases])
            done += len(leases)
        return n / (time.perf_counter() - t0)
    finally:
        await store.close()


async def main(n: int) -> None:
    with RedisServer() as server:
        for label, queue, served in (
            ("default", "default", ("default",)),
            ("gpu", "gpu", ("gpu",)),
            ("gpu of a,b,gpu", "gpu", ("a", "b", "gpu")),
        ):
            rates = [await run(server.url, n, queue, served) for _ in range(3)]
            print(f"{label:<16} fetch+ack {max(rates):>9,.0f} jobs/s (best of 3, n={n})")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
