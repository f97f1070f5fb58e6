"""Dashboard page loads with many instances in Redis (a benchmark, not a test).

    .venv/bin/python benchmarks/dashboard_bench.py                 # 100,000 instances
    .venv/bin/python benchmarks/dashboard_bench.py --instances 20000 --loads 20

Starts a private redis-server, creates ``--instances`` instances with ``create_instance`` (the
one script a client start runs; they stay pending, which is what the indexes see either way),
then starts ``durable-redis dashboard`` as its own process and times full HTTP GETs of
the pages an operator opens: the instances page (first page, a page deep in the cursor chain, a
status filter, a name filter), the overview, one instance, and an id-prefix search. Prints
median and p95 per page; the target is <= 200 ms for the instances page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from durable_redis import core  # noqa: E402
from durable_redis.devtools import RedisServer  # noqa: E402
from durable_redis.storage import InstanceCreate, RedisStore  # noqa: E402

NAMESPACE = "bench-dashboard"


async def seed(url: str, count: int) -> float:
    store = RedisStore.from_url(url, namespace=NAMESPACE)
    await store.initialize()
    started = time.perf_counter()
    names = ("checkout", "refund", "onboarding", "nightly_report")
    batch = 50  # concurrent creates (the pool has a connection limit)
    for first in range(0, count, batch):
        jobs = []
        for i in range(first, min(first + batch, count)):
            name = names[i % len(names)]
            data = core.encode_message(core.start_message(name=name, version="", input=b"\x90"))
            jobs.append(
                store.create_instance(
                    f"order-{i:07d}",
                    InstanceCreate(name=name, input=b"\x90"),
                    f"start:{i}",
                    data,
                )
            )
        await asyncio.gather(*jobs)
    took = time.perf_counter() - started
    await store.close()
    return took


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[float, str]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as reply:
        body = reply.read().decode()
    return (time.perf_counter() - start) * 1000, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=30, help="GETs per page")
    args = parser.parse_args()
    with RedisServer(unix_socket=False) as server:
        took = asyncio.run(seed(server.url, args.instances))
        print(f"created {args.instances:,} instances in {took:.1f} s")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "durable_redis.cli", "dashboard", "--redis-url", server.url,
             "--namespace", NAMESPACE, "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    get(base + "/static/dashboard.css")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            # a cursor deep in the chain: follow 'next page' up to 200 times (10,000 instances in)
            deep = "/instances"
            hops = max(0, min(200, args.instances // 50 - 1))
            for _ in range(hops):
                _ms, body = get(base + deep)
                match = re.search(r'href="([^"]+)" id="next-page"', body)
                assert match, "no next page"
                deep = match.group(1).replace("&amp;", "&")
            prefix = f"order-{args.instances - 1:07d}"[:-2]  # the last 100 ids
            pages = {
                "instances (first page)": "/instances",
                f"instances (page {hops + 1}, by cursor)": deep,
                "instances ?status=pending": "/instances?status=pending",
                "instances ?name=refund": "/instances?name=refund",
                "instances live refresh (partial)": "/instances?partial=1",
                "overview": "/",
                "one instance": f"/instance?id=order-{args.instances // 2:07d}",
                f"id prefix search {prefix}": f"/instances?q={prefix}",
            }
            print(f"{'page':<36} {'median ms':>10} {'p95 ms':>8}  (n = {args.loads}, full GET)")
            for label, path in pages.items():
                get(base + path)  # warm
                samples = sorted(get(base + path)[0] for _ in range(args.loads))
                p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
                print(f"{label:<36} {statistics.median(samples):>10.1f} {p95:>8.1f}")
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
