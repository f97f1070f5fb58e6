"""Update round trip and get_value latency: a private Redis, one in-process worker, the order
workflow of examples/order_updates.py (docs/messaging.md).

Run: python benchmarks/messaging_latency.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _support import in_process_worker, redis_url, unique_namespace
from order_updates import app, order

from durable_redis import Client

UPDATES = 200


async def main(url: str) -> None:
    ns = unique_namespace("measure")
    async with in_process_worker(app, url, ns), Client.from_url(url, namespace=ns, app=app) as c:
        iid = await c.start(order, "m", instance_id="m1")
        updates: list[float] = []
        for _ in range(UPDATES):
            t = time.perf_counter()
            await c.update(iid, "add_item", "apple")
            updates.append((time.perf_counter() - t) * 1000)
        reads: list[float] = []
        for _ in range(UPDATES):
            t = time.perf_counter()
            await c.get_value(iid, "total")
            reads.append((time.perf_counter() - t) * 1000)
        events = len(await c.get_history(iid))
        p90 = sorted(updates)[int(UPDATES * 0.9) - 1]
        print(
            f"update round trip: median {statistics.median(updates):.1f} ms, p90 {p90:.1f} ms "
            f"({UPDATES} updates; the history grew to {events} events)"
        )
        print(f"get_value: median {statistics.median(reads):.2f} ms")


if __name__ == "__main__":
    with redis_url() as url:
        anyio.run(main, url)
