"""Benchmark harness: our workloads side by side with the peers, in one run.

    .venv/bin/python benchmarks/harness.py            # full: warm-up + 3 runs, all peers (~30 min)
    .venv/bin/python benchmarks/harness.py --quick    # < 3 min: 1 run, fewer peers (say so)
    durable-redis bench [--quick]                      # the same, from the CLI

Starts one private redis-server on a loopback TCP port (the peers use TCP too), runs every
workload of ours and, alternating run by run, the same workload on each available peer (each in
its own virtualenv under --peer-venvs, running the scripts in --peers-dir in place). Writes
``results.jsonl`` (every run), ``table.md`` and ``chart.png`` to --out and prints the table.
The full run also rewrites the table section of ``benchmarks/README.md``.

Figures are medians over the measured runs; ratios compare medians from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import workloads as W  # noqa: E402
from peers import DURABLE_PEERS, QUEUE_PEERS  # noqa: E402

from durable_redis.devtools import RedisServer, find_redis_server  # noqa: E402

DUROXIDE_WORKLOADS = ["hello", "chain100", "fanout1000", "many_orch", "timer"]


# -- progress ------------------------------------------------------------------------------------
class Progress:
    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.done = 0
        self.t0 = time.perf_counter()

    def step(self, label: str) -> None:
        self.show(label)
        self.done += 1

    def show(self, label: str) -> None:
        width = 30
        filled = int(width * self.done / self.total)
        el = time.perf_counter() - self.t0
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {el:5.0f}s {label[:60]:<60}")
        sys.stderr.flush()

    def finish(self) -> None:
        self.done = self.total
        self.show("done")
        sys.stderr.write("\n")


# -- results ------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One (workload, system) pair: its runs and the headline metric."""

    workload: str
    system: str
    metric: str
    higher_is_better: bool
    runs: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"
    note: str = ""

    def values(self) -> list[float]:
        return [float(r[self.metric]) for r in self.runs if r.get(self.metric) is not None]

    def median(self) -> float | None:
        v = self.values()
        return statistics.median(v) if v else None


class Results:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.cells: dict[tuple[str, str], Cell] = {}
        self.extra: dict[str, Any] = {}
        self.jsonl = open(out / "results.jsonl", "a")  # noqa: SIM115

    def cell(self, workload: str, system: str, metric: str, higher: bool) -> Cell:
        key = (workload, system)
        if key not in self.cells:
            self.cells[key] = Cell(workload, system, metric, higher)
        return self.cells[key]

    def record(
        self, workload: str, system: str, run: int, data: dict[str, Any], warmup: bool
    ) -> None:
        line = {"workload": workload, "system": system, "run": run, "warmup": warmup, **data}
        self.jsonl.write(json.dumps(line, default=str) + "\n")
        self.jsonl.flush()


# -- peers ---------------------------------------------------------------------------------------
def peer_python(venvs: Path, peer: str) -> Path | None:
    py = venvs / peer / "bin" / "python"
    return py if py.exists() else None


def run_durable_peer(
    args: argparse.Namespace, peer: str, workload: str, port: int
) -> dict[str, Any]:
    """One run of ``workload`` on duroxide, redflow or DBOS (their scripts share one CLI)."""
    py = peer_python(args.peer_venvs, peer)
    if py is None:
        return {"status": f"not installed (no virtualenv at {args.peer_venvs / peer})"}
    script, provider, config = DURABLE_PEERS[peer]
    workdir = args.out / peer
    cmd = [
        str(py),
        str(args.peers_dir / script),
        "--workloads",
        workload,
        "--providers",
        provider,
        "--configs",
        config,
    ]
    cmd += ["--runs", "1", "--warmup", "0", "--workdir", str(workdir)]
    if peer == "redflow":  # our server (its own key prefix per cell, deleted afterwards)
        cmd += ["--redis-url", f"redis://127.0.0.1:{port}/0"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=args.out)
    except subprocess.TimeoutExpired:
        return {"status": "timeout (900 s)"}
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            row: dict[str, Any] = json.loads(line)
            units = W.PEER_UNITS.get(workload)
            if units and isinstance(row.get("worker_cpu_s"), int | float):
                row["worker_us_per_unit"] = round(row["worker_cpu_s"] * 1e6 / units, 1)
            return row
    return {"status": f"error: rc={res.returncode} {res.stderr[-300:]}"}


# our workload -> the queue peers' workload of the same measurement
PEER_WORKLOAD = {"drain10k": "drain10k", "enqueue10k": "enqueue10k", "job_roundtrip": "roundtrip"}


def run_queue_peer(
    args: argparse.Namespace, peer: str, n: int, port: int, workload: str = "drain10k"
) -> dict[str, Any]:
    py = peer_python(args.peer_venvs, peer)
    if py is None:
        return {"status": f"not installed (no virtualenv at {args.peer_venvs / peer})"}
    qdir = args.peers_dir / "queues"
    timeout = args.peer_timeout
    wanted = PEER_WORKLOAD[workload]
    cmd = [str(py), f"peer_{peer}.py", "--workload", wanted, "--runs", "1", "--n", str(n)]
    cmd += ["--timeout", str(timeout), "--redis-url", f"redis://127.0.0.1:{port}/0"]
    env = dict(os.environ)
    env.update(
        PEER_LOG_DIR=str(args.out / "peer_logs"),
        PEER_QUIET_MAX_WAIT=str(args.quiet_wait),
        PEER_RETRIES="0",
        PEER_REDIS_URL=f"redis://127.0.0.1:{port}/0",  # some peer modules read it at import
        PYTHONDONTWRITEBYTECODE="1",
    )
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout * 2 + 120, cwd=qdir, env=env
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout (script)"}
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            if row.get("workload") == wanted:
                run0 = (row.get("runs") or [{}])[0]
                row["other_cores"] = run0.get("other_cores")
                return dict(row)
    return {"status": f"error: rc={res.returncode} {res.stderr[-300:]}"}


# -- the plan ------------------------------------------------------------------------------------
@dataclass
class Sizes:
    hello: int = 200
    chain: int = 100
    fanout: int = 1000
    many: int = 1000
    timer: int = 100
    drain: int = 10_000
    sessions: int = 100
    turns: int = 20
    memory: int = 1000
    retention_s: float = 20.0


HEADLINE = {
    # workload: (our metric, peer metric (duroxide/queue json key), higher is better, unit)
    "hello": ("p50_ms", "lat_ms_p50", False, "latency p50 ms"),
    "hello_p99": ("p99_ms", "lat_ms_max", False, "latency p99 ms (duroxide: max of 20)"),
    "chain100": ("activities_per_s", "activities_per_s", True, "activities/s"),
    "chain100_local": ("activities_per_s", "activities_per_s", True, "local activities/s"),
    "chain100_inline": ("activities_per_s", "activities_per_s", True, "inline activities/s"),
    "fanout1000_inline": ("activities_per_s", "activities_per_s", True, "inline activities/s"),
    "fanout1000": ("activities_per_s", "activities_per_s", True, "activities/s"),
    "many_orch": ("orch_per_s", "orch_per_s", True, "orchestrations/s"),
    "timer": ("late_p99_ms", "fire_late_ms_p99", False, "lateness p99 ms"),
    "timer_p50": ("late_p50_ms", "fire_late_ms_p50", False, "lateness p50 ms"),
    "drain10k": ("jobs_per_s", "jobs_per_s", True, "jobs/s"),
    "drain10k_orch": ("jobs_per_s", "jobs_per_s", True, "jobs/s (one orchestration per job)"),
    "enqueue10k": ("jobs_per_s", "jobs_per_s", True, "jobs/s (enqueue_many)"),
    "job_roundtrip": ("p50_ms", "median_ms", False, "enqueue -> result p50 ms"),
}


# workloads measured once (no peers, no alternation)
SINGLE_RUN = ("memory", "ceiling", "fanout_scaling", "cluster")


async def ours(workload: str, url: str, s: Sizes, processes: int = 1) -> dict[str, Any]:
    if workload == "hello":
        return await W.w_hello(url, s.hello)
    if workload == "chain100":
        return await W.w_chain(url, s.chain)
    if workload == "chain100_local":
        return await W.w_chain_local(url, s.chain)
    if workload == "chain100_inline":
        return await W.w_chain(url, s.chain, inline=True)
    if workload == "fanout1000_inline":
        return await W.w_fanout(url, s.fanout, inline=True)
    if workload == "fanout1000":
        return await W.w_fanout(url, s.fanout)
    if workload == "many_orch":
        return await W.w_many(url, s.many, processes)
    if workload == "timer":
        return await W.w_timer(url, s.timer)
    if workload == "drain10k":
        return await W.w_drain(url, s.drain)
    if workload == "drain10k_orch":
        return await W.w_drain_orch(url, s.drain)
    if workload == "enqueue10k":
        return await W.w_enqueue(url, s.drain)
    if workload == "job_roundtrip":
        return await W.w_job_roundtrip(url)
    if workload == "sessions":
        return await W.w_sessions(url, s.sessions, s.turns)
    if workload == "memory":
        return await W.w_memory(url, s.memory, s.retention_s)
    raise ValueError(workload)


def safe(fn: Any, *a: Any) -> dict[str, Any]:
    try:
        out: dict[str, Any] = asyncio.run(fn(*a)) if asyncio.iscoroutinefunction(fn) else fn(*a)
        out.setdefault("status", "ok")
        return out
    except Exception as exc:  # report, keep going
        return {"status": f"error: {type(exc).__name__}: {exc}"}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="under 3 minutes: 1 run, smaller drain, 2 peers"
    )
    ap.add_argument("--runs", type=int, help="measured runs per cell (default 3; quick 1)")
    ap.add_argument(
        "--warmup", type=int, help="warm-up runs per cell, discarded (default 1; quick 0)"
    )
    ap.add_argument("--workloads", help="comma list (default all)")
    ap.add_argument(
        "--peers",
        help="comma list of peers (default all; quick: duroxide,dramatiq); 'none' for none",
    )
    ap.add_argument("--peers-dir", type=Path, default=Path("/work/shared/peers"))
    ap.add_argument("--peer-venvs", type=Path, default=Path("/tmp/peers"))
    ap.add_argument("--peer-timeout", type=float, default=120.0, help="per peer drain run (s)")
    ap.add_argument(
        "--quiet-wait", type=float, default=5.0, help="peer harness: max wait for a quiet machine"
    )
    ap.add_argument(
        "--out", type=Path, help="results folder (default /tmp/durable_redis_bench/<time>)"
    )
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite benchmarks/README.md")
    ap.add_argument(
        "--unix-socket",
        action="store_true",
        help="our workloads talk to Redis over a unix socket (co-located Redis) instead of TCP "
        "loopback; needs --peers none (the peers connect over TCP)",
    )
    args = ap.parse_args()

    quick = args.quick
    runs = args.runs if args.runs is not None else (1 if quick else 3)
    warmup = args.warmup if args.warmup is not None else (0 if quick else 1)
    s = Sizes()
    if quick:
        s = Sizes(drain=2000, memory=300, retention_s=4.0)
    all_workloads = [
        "hello",
        "chain100",
        "chain100_local",
        "fanout1000",
        "many_orch",
        "timer",
        "drain10k",
    ]
    all_workloads += ["drain10k_orch", "enqueue10k", "job_roundtrip"]
    all_workloads += ["sessions", "memory", "scale", "ceiling"]
    if not quick:
        all_workloads += ["fanout_scaling", "cluster"]
    wl = args.workloads.split(",") if args.workloads else all_workloads
    if args.peers:
        peers = [] if args.peers == "none" else args.peers.split(",")
    else:
        peers = ["duroxide", "dramatiq"] if quick else [*DURABLE_PEERS, *QUEUE_PEERS]
    quick_duroxide = {
        "hello"
    }  # in quick mode duroxide only runs hello (its chain/fanout take ~11 s each)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out = (args.out or Path("/tmp/durable_redis_bench") / stamp).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["BENCH_LOG_DIR"] = str(args.out / "logs")
    W.LOG_DIR = args.out / "logs"
    res = Results(args.out)

    def peers_for(w: str) -> list[str]:
        out = []
        if w in DUROXIDE_WORKLOADS and (not quick or w in quick_duroxide):
            out += [p for p in peers if p in DURABLE_PEERS]
        if w in PEER_WORKLOAD:
            out += [p for p in peers if p in QUEUE_PEERS]
        return out

    slots = warmup + runs
    total = 0
    for w in wl:
        if w in SINGLE_RUN:
            total += 1
        elif w == "scale":
            total += 3 * runs
        else:
            total += slots * (1 + len(peers_for(w)))
    prog = Progress(total)
    machine = machine_info()
    t_start = time.perf_counter()
    if args.unix_socket and peers:
        ap.error("--unix-socket needs --peers none (the peers connect over TCP)")
    with RedisServer(unix_socket=args.unix_socket) as server:
        url = server.url
        port = server.port
        W.REDIS_PID = server.pid
        machine["redis_url"] = (
            "unix:///<private dir>/redis.sock (unix socket, no persistence)"
            if args.unix_socket
            else "redis://127.0.0.1:<private port>/0 (TCP loopback, no persistence)"
        )
        for w in wl:
            if w in SINGLE_RUN:
                prog.step(f"{w} ours")
                if w == "memory":
                    data = safe(ours, "memory", url, s)
                elif w == "fanout_scaling":
                    data = safe(W.w_fanout_scaling, url)
                elif w == "cluster":
                    # its own local clusters (1 and 3 primaries), many_orch with 2 processes
                    import cluster_bench

                    data = safe(cluster_bench.w_cluster, s.many, 2)
                else:
                    data = safe(W.w_ceiling, url, "127.0.0.1", port)
                res.record(w, "ours", 0, data, False)
                res.extra[w] = data
                continue
            if w == "scale":
                for i in range(runs):
                    for k in (1, 2, 4):
                        prog.step(f"scale {k} processes run {i + 1}")
                        data = safe(ours, "many_orch", url, s, k)
                        res.record(f"scale{k}", "ours", i, data, False)
                        c = res.cell(f"scale_{k}proc", "ours", "orch_per_s", True)
                        c.runs.append(data)
                continue
            if w == "sessions":
                for i in range(slots):
                    prog.step(f"sessions ours run {i + 1}/{slots}")
                    data = safe(ours, "sessions", url, s)
                    res.record(w, "ours", i, data, i < warmup)
                    if i >= warmup:
                        res.cell("sessions", "ours", "turns_per_s", True).runs.append(data)
                continue
            ours_metric, peer_metric, higher, _unit = HEADLINE[w]
            for i in range(slots):
                is_warm = i < warmup
                tag = "warm-up" if is_warm else f"run {i - warmup + 1}/{runs}"
                prog.step(f"{w} ours {tag}")
                data = safe(ours, w, url, s)
                res.record(w, "ours", i, data, is_warm)
                if not is_warm:
                    res.cell(w, "ours", ours_metric, higher).runs.append(data)
                    if w == "hello":
                        res.cell("hello_p99", "ours", "p99_ms", False).runs.append(data)
                    if w == "timer":
                        res.cell("timer_p50", "ours", "late_p50_ms", False).runs.append(data)
                for p in peers_for(w):
                    prog.step(f"{w} {p} {tag}")
                    if p in DURABLE_PEERS:
                        pdata = run_durable_peer(args, p, w, port)
                    else:
                        cell = res.cells.get((w, p))
                        if cell is not None and cell.status.startswith("timeout"):
                            continue  # a timed-out peer is not repeated
                        pdata = run_queue_peer(args, p, s.drain, port, w)
                    res.record(w, p, i, pdata, is_warm)
                    cell = res.cell(w, p, peer_metric, higher)
                    st = str(pdata.get("status", "ok"))
                    if st != "ok":
                        cell.status = st
                        if pdata.get("partial_jobs_per_s"):
                            cell.note = f"partial {pdata['partial_jobs_per_s']} jobs/s"
                    if not is_warm and pdata.get(peer_metric) is not None:
                        cell.runs.append(pdata)
                        if w == "hello":
                            res.cell("hello_p99", p, "lat_ms_max", False).runs.append(pdata)
                        if w == "timer":
                            res.cell("timer_p50", p, "fire_late_ms_p50", False).runs.append(pdata)
    prog.finish()
    elapsed = time.perf_counter() - t_start
    cmd = "durable-redis bench" + (" --quick" if quick else "")
    if len(sys.argv) > 1 and not (quick and sys.argv[1:] == ["--quick"]):
        cmd = "python benchmarks/harness.py " + " ".join(sys.argv[1:])
    from report import render

    table = render(res, machine, cmd, quick, runs, warmup, peers, elapsed, s)
    (args.out / "table.md").write_text(table)
    try:
        from report import chart

        chart(res, args.out / "chart.png")
    except Exception as exc:
        print(f"chart not written: {exc}", file=sys.stderr)
    print(table)
    print(f"results: {args.out} (results.jsonl, table.md, chart.png)", file=sys.stderr)
    if not quick and not args.no_readme and not args.workloads:
        from report import update_readme

        update_readme(HERE / "README.md", table, args.out / "chart.png")
    return 0


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    try:
        binary = find_redis_server() or "redis-server"  # the one RedisServer runs
        redis_v = subprocess.run(
            [binary, "--version"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        redis_v = "?"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "redis": redis_v.split(" v=")[1].split()[0] if " v=" in redis_v else redis_v,
        "commit": commit,
    }


if __name__ == "__main__":
    sys.exit(main())
