"""Before/after of one change: alternate two (or more) source trees run by run, in one sitting.

    git worktree add --detach /tmp/ab/before <commit before>
    git worktree add --detach /tmp/ab/after <commit after>
    .venv/bin/python benchmarks/ab_trees.py /tmp/ab/before /tmp/ab/after \\
        --workloads many_orch,chain100,fanout1000 --rounds 3

Each run starts a private ``redis-server`` (unix socket), one worker process of that tree
(``python -m durable_redis.runtime bench_app:app``, default options, its ``benchmarks/`` as the
working directory) and a client of the same tree, and measures the worker's and Redis's CPU
per unit with ``proc_cpu.proc_cpu_s`` (every thread), the worker's script calls
(``RedisStore.calls``, written at exit) and the commands the scripts ran inside Redis
(``redis.call``s: ``INFO commandstats`` of every command but the script calls themselves and
the blocking waits, reset after the warm-up; the client's own few reads count too). Unlike CPU
time, those counts do not move with the load of a shared machine. The trees alternate run by
run, so the other load of a shared machine falls on both alike; compare the medians of one
sitting, not figures from different sittings.

Workloads (``--units`` each, default 2,000): ``hello`` (one orchestration of one activity at a
time, start to result: the rate is 1 / its latency), ``many_orch`` (``hello`` started 64 at a time),
``chain100`` (chains of 100 sync activities), ``chain100_inline`` (the activity marked
``inline=True``), ``fanout1000`` (fan-outs of 1,000), ``sessions`` (orchestrations of 20
activities on a session, units / 20 of them started at once; one worker process here, four in
the harness).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

# loaded from this file's directory before any tree's modules: both sides count CPU alike
from proc_cpu import proc_cpu_s

WORKLOADS = ("hello", "many_orch", "chain100", "chain100_inline", "fanout1000", "sessions")


async def _drive(client: Any, app_module: Any, workload: str, units: int) -> None:
    if workload == "many_orch":
        sem = asyncio.Semaphore(64)
        handles: list[Any] = []

        async def one(i: int) -> None:
            async with sem:
                handles.append(await client.start(app_module.hello, i))

        await asyncio.gather(*(one(i) for i in range(units)))
        for h in handles:
            await h.result(timeout=300)
        return
    if workload == "hello":  # one at a time: the rate is 1 / the start -> result latency
        for i in range(units):
            await (await client.start(app_module.hello, i)).result(timeout=60)
        return
    if workload == "sessions":  # the harness's 100 x 20, all started at once: units / 20
        started = [await client.start(app_module.session_turns, 20) for _ in range(units // 20)]
        for h in started:
            await h.result(timeout=300)
        return
    orchestration, size = {
        "chain100": (app_module.chain, 100),
        "chain100_inline": (app_module.chain_inline, 100),
        "fanout1000": (app_module.fanout, 1000),
    }[workload]
    for _ in range(max(1, units // size)):
        h = await client.start(orchestration, size)
        await h.result(timeout=300)


def run_one(tree: Path, workload: str, units: int) -> dict[str, Any]:
    """One measured run, in this process with ``tree``'s code first on the path."""
    sys.path[:0] = [str(tree / "benchmarks"), str(tree)]
    from durable_redis.client import Client
    from durable_redis.devtools import RedisServer

    bench_app = importlib.import_module("bench_app")  # the tree's benchmarks/bench_app.py

    stats = Path(tempfile.mkdtemp(prefix="ab-trees-")) / "calls.json"
    env = dict(
        os.environ,
        PYTHONPATH=f"{tree}{os.pathsep}{tree / 'benchmarks'}",
        DURABLE_REDIS_STATS_FILE=str(stats),
    )

    async def main() -> dict[str, Any]:
        with RedisServer() as server:
            cmd = [sys.executable, "-m", "durable_redis.runtime", "bench_app:app"]
            cmd += ["--redis-url", server.url, "--namespace", "ab"]
            worker = subprocess.Popen(
                cmd, cwd=tree / "benchmarks", env=env, stderr=subprocess.DEVNULL
            )
            try:
                async with Client.from_url(server.url, namespace="ab", app=bench_app.app) as c:
                    warm = await c.start(bench_app.hello, 0)  # the worker is up and warm
                    await warm.result(timeout=60)
                    assert server.pid is not None
                    plain = redis.Redis.from_url(server.url)
                    plain.config_resetstat()
                    rcpu0 = proc_cpu_s(server.pid)
                    cpu0, t0 = proc_cpu_s(worker.pid), time.monotonic()
                    await _drive(c, bench_app, workload, units)
                    wall, cpu = time.monotonic() - t0, proc_cpu_s(worker.pid) - cpu0
                    rcpu = proc_cpu_s(server.pid) - rcpu0
                    cmdstats = plain.info("commandstats")
                    plain.close()
            finally:
                worker.terminate()
                worker.wait(timeout=30)
        calls = json.loads(stats.read_text()) if stats.exists() else {}
        script_calls = sum(n for name, n in calls.items() if ":" not in name)
        outer = ("evalsha", "eval", "fcall", "bzpopmin", "config", "info", "client", "hello")
        inner = sum(
            v["calls"]
            for k, v in cmdstats.items()
            if k.removeprefix("cmdstat_").split("|")[0] not in outer
        )
        return {
            "redis_calls_per_unit": inner / units,
            "rate": units / wall,
            "worker_us_per_unit": 1e6 * cpu / units,
            "redis_us_per_unit": 1e6 * rcpu / units,
            "script_calls_per_unit": script_calls / units,
        }

    return asyncio.run(main())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="*", type=Path, help="source trees (git worktrees)")
    p.add_argument("--workloads", default="many_orch,chain100,fanout1000")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--units", type=int, default=2000)
    p.add_argument("--one", nargs=3, metavar=("TREE", "WORKLOAD", "UNITS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        tree, workload, units = Path(args.one[0]), args.one[1], int(args.one[2])
        print(json.dumps(run_one(tree, workload, units)))
        return
    if not args.trees:
        p.error("name at least one source tree")
    workloads = args.workloads.split(",")
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}; known: {', '.join(WORKLOADS)}")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rnd in range(1, args.rounds + 1):
        for workload in workloads:
            for tree in args.trees:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        str(tree.resolve()),
                        workload,
                        str(args.units),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                if out.returncode != 0:
                    sys.exit(f"{tree} {workload}: failed\n{out.stderr[-2000:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                load = os.getloadavg()[0]
                runs.setdefault((workload, str(tree)), []).append(row)
                print(
                    f"round {rnd} {workload:16} {tree}: {row['worker_us_per_unit']:,.0f} µs/unit, "
                    f"Redis {row['redis_us_per_unit']:,.0f} µs/unit, "
                    f"{row['script_calls_per_unit']:.2f} calls/unit "
                    f"({row['redis_calls_per_unit']:.1f} redis.calls), {row['rate']:,.0f}/s "
                    f"(load {load:.2f})",
                    flush=True,
                )
    print(
        "\n| workload | tree | worker µs per unit (median; runs) | Redis µs per unit (median) "
        "| script calls per unit | redis.calls per unit | rate |"
    )
    print("|---|---|---|---|---|---|---|")
    for (workload, name), rows in runs.items():
        us = [r["worker_us_per_unit"] for r in rows]
        rates = [r["rate"] for r in rows]
        print(
            f"| {workload} | {name} | {statistics.median(us):,.0f} "
            f"({', '.join(f'{x:,.0f}' for x in us)}) | "
            f"{statistics.median(r['redis_us_per_unit'] for r in rows):,.0f} | "
            f"{statistics.median(r['script_calls_per_unit'] for r in rows):.2f} | "
            f"{statistics.median(r.get('redis_calls_per_unit', 0) for r in rows):.1f} | "
            f"{statistics.median(rates):,.0f}/s |"
        )


if __name__ == "__main__":
    main()
