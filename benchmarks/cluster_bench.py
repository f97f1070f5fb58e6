"""The ``cluster`` workload: ``many_orch`` on a 1-shard versus a 3-shard Redis Cluster.

Same namespace layout (P = 8 partitions), same number of worker processes, same workload (n
``hello`` orchestrations, 64 starts in flight; orchestrations/s = n / (first start -> last
completion)); only the number of primaries the 8 partitions spread over changes. Each cluster is
a private ``LocalCluster`` on loopback ports, stopped by pid afterwards.

    .venv/bin/python benchmarks/cluster_bench.py --n 1000 --processes 2

Harness wiring (``benchmarks/harness.py``, ``ours()``)::

    if workload == "cluster":
        import cluster_bench
        return await cluster_bench.w_cluster(s.many, processes=max(2, processes))

On a 2-core machine the ratio is bounded by CPU, not by Redis: the worker processes (Python,
~2 cores' worth at saturation) and the Redis processes share the same 2 cores, so adding shards
adds Redis capacity the machine has no cores to use; expect a ratio near 1 (or below: 3 servers
plus more connections cost context switches). The point of the run is that it scales out
correctly; the gain needs cores (or machines) per shard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from durable_redis import Client, RedisStore  # noqa: E402
from durable_redis.devtools import WorkerProcesses  # noqa: E402
from durable_redis.devtools.cluster_server import LocalCluster  # noqa: E402
from durable_redis.storage.base import InstanceStatus  # noqa: E402

LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", "/tmp/durable_redis_bench/logs"))


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


async def many_orch_on(
    cluster: LocalCluster, n: int, processes: int, partitions: int
) -> dict[str, Any]:
    import bench_app

    ns = f"c{uuid.uuid4().hex[:10]}"
    store = RedisStore.from_url(cluster.url, namespace=ns, partitions=partitions)
    await store.initialize()
    workers = WorkerProcesses(
        "bench_app:app",
        cluster.url,
        namespace=ns,
        log_level="WARNING",
        log_dir=LOG_DIR,
        log_prefix=f"cluster-{ns}",
        cwd=HERE,
        new_session=True,
    )
    workers.start(processes)
    procs = workers.workers
    client = Client(store, bench_app.app)
    try:

        async def terminal() -> int:
            counts = await store.count_by_status()
            return sum(v for k, v in counts.items() if k.is_terminal)

        async def wait_terminal(target: int, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while await terminal() < target:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{await terminal()}/{target} terminal")
                if not all(p.alive() for p in procs):
                    raise RuntimeError(f"a worker exited; see {LOG_DIR}")
                await asyncio.sleep(0.02)

        warm = 4 * processes
        for i in range(warm):
            await client.start(bench_app.hello, i)
        await wait_terminal(warm, 120)
        sem = asyncio.Semaphore(64)

        async def one(x: int) -> str:
            async with sem:
                return await client.start(bench_app.hello, x)

        cpu0 = sum(_cpu_s(p.pid) for p in procs)
        redis0 = sum(_cpu_s(node.pid or 0) for node in cluster.nodes)
        t0 = time.monotonic()
        await asyncio.gather(*(one(x) for x in range(n)))
        await wait_terminal(warm + n, 600)
        secs = time.monotonic() - t0
        worker_cpu = sum(_cpu_s(p.pid) for p in procs) - cpu0
        redis_cpu = sum(_cpu_s(node.pid or 0) for node in cluster.nodes) - redis0
        completed = (await store.count_by_status())[InstanceStatus.COMPLETED]
        return {
            "orch_per_s": round(n / secs, 1),
            "s": round(secs, 2),
            "completed": completed - warm,
            "worker_cores": round(worker_cpu / secs, 2),
            "redis_cores": round(redis_cpu / secs, 2),
        }
    finally:
        workers.stop(grace=15.0)
        await store.close()


async def w_cluster(n: int = 1000, processes: int = 2, partitions: int = 8) -> dict[str, Any]:
    """many_orch on 1 shard and on 3 shards (P partitions, ``processes`` workers each)."""
    out: dict[str, Any] = {"n": n, "processes": processes, "partitions": partitions}
    for shards in (1, 3):
        with LocalCluster(primaries=shards) as cluster:
            out[f"shards_{shards}"] = await many_orch_on(cluster, n, processes, partitions)
    one = out["shards_1"]["orch_per_s"]
    three = out["shards_3"]["orch_per_s"]
    out["orch_per_s"] = three
    out["ratio_3_over_1"] = round(three / one, 2) if one else None
    out["cores"] = os.cpu_count()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(w_cluster(args.n, args.processes, args.partitions)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
