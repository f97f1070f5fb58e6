"""Cost of flow control on the ``drain10k`` jobs workload (docs/routing.md "Cost"), and the
fairness figure. On a private Redis, one worker process (``bench_app:app``, started after the
enqueue, as in ``harness.py``'s drain10k) drains N no-op jobs:

- ``plain``: queue "default", priority 0, no key (drain10k as the harness runs it);
- ``queue+priority+key``: every job on queue "q1", priority 3 and a concurrency key
  ``tenant-<i % 100>`` with a limit of 50 per key (enforced: every fetch and ack counts
  slots), 100 groups taking turns;
- ``... unique keys``: the same with a key per job (the worst case: N groups).

The variants alternate (best of ``--runs`` each, by the rate from spawn); "steady" is the rate
from the first completion. CPU per job is the worker's and Redis's. The last column counts the
Redis commands the job scripts run per job in a store-level fetch (128) + ack loop: a count,
steady where the rates move with the machine's load.
Fairness: 10,000 jobs of one key queued and draining, then one job of another key: how many
of the big key's jobs completed between that job's enqueue and its completion, and its latency.

    .venv/bin/python benchmarks/flow_bench.py [--n 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from workloads import Meter, Run, _jobs_done

from durable_redis import Limit, WorkerOptions
from durable_redis.devtools import RedisServer
from durable_redis.storage import RedisStore
from durable_redis.storage.job_types import JobAck, JobOutcome, NewJob


async def drain(url: str, n: int, variant: str) -> dict[str, Any]:
    queues = ("default",) if variant == "plain" else ("q1",)
    async with Run(url, tag=f"flow-{variant[:5]}", start_workers=False,
                   options=WorkerOptions(queues=queues)) as run:  # fmt: skip
        inputs = list(range(n))
        if variant == "plain":
            await run.client.enqueue_many(run.app.noop, inputs)
        else:
            per_key = 100 if variant == "queue+priority+key" else n
            groups: dict[int, list[int]] = {}
            for i in inputs:
                groups.setdefault(i % per_key, []).append(i)
            for k, items in groups.items():
                limit = Limit(key=f"tenant-{k}", concurrency=50)
                await run.client.enqueue_many(
                    run.app.noop, items, queue="q1", priority=3, limit=limit
                )
        await run.spawn()
        m = Meter()
        await m.start(run)
        t0 = time.perf_counter()
        t_first = None
        while (done := await _jobs_done(run)) < n:
            if done and t_first is None:
                t_first = time.perf_counter()
            if time.perf_counter() - t0 > 300:
                raise TimeoutError(f"{variant}: not drained after 300 s")
            await asyncio.sleep(0.005)
        now = time.perf_counter()
        cpu = await m.stop()
    return {
        "jobs_per_s": n / (now - t0),
        "steady": (n - 1) / (now - (t_first or t0)),
        "worker_ms": cpu["worker_cpu_s"] * 1000 / n,
        "redis_ms": cpu["redis_cpu_s"] * 1000 / n,
    }


async def _calls(store: RedisStore) -> int:
    stats = await store._r.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_info"))


async def store_calls(url: str, n: int, variant: str) -> float:
    """Redis commands per job (run inside the scripts) of the store's fetch (128) + ack loop:
    a count, so it does not move with the machine's load as the rates do."""
    store = RedisStore.from_url(url, namespace=f"fb-{uuid.uuid4().hex[:6]}")
    await store.initialize()
    try:
        if variant == "plain":
            jobs = [NewJob(f"j{i}", "work", b"x") for i in range(n)]
        else:
            k = 100 if variant == "queue+priority+key" else n
            jobs = [
                NewJob(f"j{i}", "work", b"x", 3, queue="q1", flow_key=f"t{i % k}", flow="50 - - 1")
                for i in range(n)
            ]
        for start in range(0, n, 1000):
            await store.enqueue_jobs(jobs[start : start + 1000])
        served = ("default",) if variant == "plain" else ("q1",)
        before = await _calls(store)
        done = 0
        while done < n:
            leases = await store.fetch_jobs("w", limit=128, lock_ms=30_000, queues=served)
            await store.ack_jobs([JobAck(x, JobOutcome.COMPLETED, b"") for x in leases])
            done += len(leases)
        return (await _calls(store) - before) / n
    finally:
        await store.close()


async def fairness(url: str, n: int = 10_000) -> dict[str, Any]:
    async with Run(url, tag="flow-fair", start_workers=False) as run:
        await run.client.enqueue_many(run.app.noop, list(range(n)), limit=Limit(key="big"))
        await run.spawn()
        while (await _jobs_done(run)) < 500:  # the big key is draining
            await asyncio.sleep(0.005)
        before = await _jobs_done(run)
        t = time.perf_counter()
        small = await run.client.enqueue(run.app.noop, -1, limit=Limit(key="small"))
        await small.result(timeout=60)
        latency = time.perf_counter() - t
        meanwhile = await _jobs_done(run) - before - 1
    return {"big_done_meanwhile": meanwhile, "latency_ms": latency * 1000}


async def main(n: int, runs: int) -> None:
    variants = ("plain", "queue+priority+key", "queue+priority+key, unique keys")
    with RedisServer() as server:
        best: dict[str, dict[str, Any]] = {}
        for _ in range(runs):
            for v in variants:
                row = await drain(server.url, n, v)
                if v not in best or row["jobs_per_s"] > best[v]["jobs_per_s"]:
                    best[v] = row
        base = best["plain"]["jobs_per_s"]
        for v in variants:
            best[v]["calls"] = await store_calls(server.url, n, v)
        steady = best["plain"]["steady"]
        print(f"| drain{n // 1000}k (best of {runs}) | jobs/s (from spawn) | vs plain "
              "| steady jobs/s | vs plain | worker CPU ms/job | Redis CPU ms/job "
              "| Redis commands/job (store fetch+ack) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for v in variants:
            r = best[v]
            print(
                f"| {v} | {r['jobs_per_s']:,.0f} | {r['jobs_per_s'] / base - 1:+.0%} "
                f"| {r['steady']:,.0f} | {r['steady'] / steady - 1:+.0%} "
                f"| {r['worker_ms']:.3f} | {r['redis_ms']:.3f} | {r['calls']:.1f} |"
            )
        f = await fairness(server.url)
        print(
            f"\nfairness: one job of a new key behind 10,000 of another: "
            f"{f['big_done_meanwhile']} of those completed before it, {f['latency_ms']:.0f} ms"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    asyncio.run(main(a.n, a.runs))
