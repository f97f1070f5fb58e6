"""Soak: a long mixed run with a worker SIGKILL every minute, Redis memory and worker RSS sampled.

    .venv/bin/python benchmarks/soak.py                 # 30 minutes (the issue's figure)
    .venv/bin/python benchmarks/soak.py --minutes 10    # shorter
    .venv/bin/python benchmarks/soak.py --minutes 1 --kill-every 20   # a smoke run

Opt-in, not run by CI. Starts its own redis-server (loopback) and ``--workers`` worker processes
serving ``bench_app:app``; keeps ``--inflight`` ``mixed`` orchestrations running (an activity, a
1 s timer, a session of 3 activities, a fan-out of 3) and enqueues ``--jobs-per-s`` background
jobs; SIGKILLs a random worker every ``--kill-every`` seconds and starts a replacement. Every
``--sample-every`` seconds it appends Redis ``used_memory`` / ``used_memory_dataset`` / ``DBSIZE``
and the workers' RSS (``/proc/<pid>/status``) to ``--csv``; at the end it plots both against time
(``--plot``; matplotlib, the ``bench`` extra) and writes a summary (``--json``). Retention is short
(``--retention`` s, janitor every 5 s) so memory should flatten after it: the summary compares
the mean of the second quarter of the run with the mean of the last quarter.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from durable_redis import Client, RedisServer, RedisStore  # noqa: E402

FIELDS = [
    "t_s",
    "used_memory",
    "used_memory_dataset",
    "dbsize",
    "workers_rss_total",
    "workers_rss_max",
    "orchestrations_done",
    "jobs_enqueued",
    "kills",
]


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Workers:
    def __init__(self, url: str, namespace: str, options: dict[str, Any], logs: Path) -> None:
        self.url, self.namespace, self.options, self.logs = url, namespace, options, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start(self) -> None:
        log = (self.logs / f"worker-{self.started}.log").open("wb")
        self.started += 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])}
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "durable_redis.runtime",
                    "bench_app:app",
                    "--redis-url",
                    self.url,
                    "--namespace",
                    self.namespace,
                    "--options",
                    json.dumps(self.options),
                    "--log-level",
                    "WARNING",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(HERE),
                env=env,
            )
        )
        log.close()

    def kill_one(self, rng: random.Random) -> None:
        victim = self.procs.pop(rng.randrange(len(self.procs)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.start()

    def rss(self) -> list[int]:
        return [rss_bytes(p.pid) for p in self.procs if p.poll() is None]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(10)


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    out_csv = Path(args.csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    logs = out_csv.parent / "soak-logs"
    logs.mkdir(exist_ok=True)
    namespace = "soak"
    options = {
        "lock_timeout": 5.0,
        "session_lock_timeout": 5.0,
        "janitor_interval": 5.0,
        "retention": float(args.retention),
        "activity_concurrency": 16,
    }
    rng = random.Random(19)
    with RedisServer(unix_socket=False) as server:
        url = server.url
        admin = redis.Redis.from_url(url)
        workers = Workers(url, namespace, options, logs)
        # one connection per waiting caller (wait_for_completion blocks on one) and some spare
        pool_size = 2 * args.inflight + 20
        store = RedisStore.from_url(url, namespace=namespace, max_connections=pool_size)
        async with Client(store) as client:
            for _ in range(args.workers):
                workers.start()
            done = failed = enqueued = kills = 0
            errors: list[str] = []
            stop_at = time.monotonic() + args.minutes * 60
            sem = asyncio.Semaphore(args.inflight)

            async def one(k: int) -> None:
                nonlocal done, failed
                try:
                    iid = await client.start("mixed", 3, instance_id=f"soak-{k}")
                    await client.wait_for_completion(iid, timeout=300)
                    done += 1
                except Exception as exc:
                    failed += 1
                    if len(errors) < 5:
                        errors.append(f"soak-{k}: {type(exc).__name__}: {exc}"[:300])
                finally:
                    sem.release()

            async def orchestrations() -> None:
                k = 0
                tasks = set()
                while time.monotonic() < stop_at:
                    await sem.acquire()
                    task = asyncio.create_task(one(k))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    k += 1
                await asyncio.gather(*tasks, return_exceptions=True)

            async def jobs() -> None:
                nonlocal enqueued
                while time.monotonic() < stop_at:
                    await client.enqueue_many("noop", range(args.jobs_per_s), result_ttl=30)
                    enqueued += args.jobs_per_s
                    await asyncio.sleep(1.0)

            async def chaos_and_samples() -> None:
                nonlocal kills
                t0 = time.monotonic()
                next_kill = t0 + args.kill_every
                next_sample = t0
                with out_csv.open("w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=FIELDS)
                    w.writeheader()
                    while time.monotonic() < stop_at:
                        now = time.monotonic()
                        if now >= next_kill:
                            workers.kill_one(rng)
                            kills += 1
                            next_kill += args.kill_every
                        if now >= next_sample:
                            mem = admin.info("memory")
                            rss = workers.rss()
                            w.writerow(
                                {
                                    "t_s": round(now - t0, 1),
                                    "used_memory": mem["used_memory"],
                                    "used_memory_dataset": mem["used_memory_dataset"],
                                    "dbsize": admin.dbsize(),
                                    "workers_rss_total": sum(rss),
                                    "workers_rss_max": max(rss, default=0),
                                    "orchestrations_done": done,
                                    "jobs_enqueued": enqueued,
                                    "kills": kills,
                                }
                            )
                            f.flush()
                            next_sample += args.sample_every
                        await asyncio.sleep(0.2)

            await asyncio.gather(orchestrations(), jobs(), chaos_and_samples())
        await store.close()
        workers.stop()
        admin.close()
    return {"orchestrations_done": done, "orchestrations_failed": failed, "errors": errors,
            "jobs": enqueued, "kills": kills}  # fmt: skip


def summarize(path: Path, totals: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rows = list(csv.DictReader(path.open()))
    n = len(rows)

    def mean(field: str, rows_: list[dict[str, str]]) -> float:
        return sum(float(r[field]) for r in rows_) / max(1, len(rows_))

    second, last = rows[n // 4 : n // 2], rows[3 * n // 4 :]
    out: dict[str, Any] = {"minutes": args.minutes, "samples": n, **totals}
    for field in ("used_memory", "used_memory_dataset", "dbsize", "workers_rss_total"):
        a, b = mean(field, second), mean(field, last)
        out[field] = {
            "second_quarter_mean": round(a),
            "last_quarter_mean": round(b),
            "change_pct": round(100 * (b - a) / a, 1) if a else None,
            "max": max(float(r[field]) for r in rows),
        }
    return out


def plot(path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(path.open()))
    t = [float(r["t_s"]) / 60 for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [int(r["used_memory"]) / 2**20 for r in rows], label="Redis used_memory")
    ax.plot(t, [int(r["used_memory_dataset"]) / 2**20 for r in rows], label="Redis dataset")
    ax.plot(t, [int(r["workers_rss_total"]) / 2**20 for r in rows], label="workers RSS (sum)")
    kills = [t[i] for i in range(1, len(rows)) if rows[i]["kills"] != rows[i - 1]["kills"]]
    for i, k in enumerate(kills):
        ax.axvline(k, color="grey", alpha=0.25, label="worker SIGKILL" if i == 0 else None)
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title("Soak: mixed load, a worker killed every minute")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--inflight", type=int, default=50, help="mixed orchestrations at once")
    p.add_argument("--jobs-per-s", type=int, default=20)
    p.add_argument("--kill-every", type=float, default=60.0)
    p.add_argument("--sample-every", type=float, default=10.0)
    p.add_argument("--retention", type=float, default=30.0)
    p.add_argument("--csv", default=str(HERE / "results" / "soak.csv"))
    p.add_argument("--json", default=str(HERE / "results" / "soak.json"))
    p.add_argument("--plot", default=str(ROOT / "docs" / "soak.png"))
    args = p.parse_args()
    totals = asyncio.run(drive(args))
    summary = summarize(Path(args.csv), totals, args)
    Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    plot(Path(args.csv), Path(args.plot))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
