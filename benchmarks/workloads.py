"""Our side of the benchmark: each workload against a running Redis, with real worker processes.

Every run uses a fresh namespace and its own worker processes (``python -m durable_redis.runtime
bench_app:app``, started in ``benchmarks/`` and stopped by their own pids). Times come from the
Redis server clock where the store records them (instance created/completed, turn times), so the
harness's own polling does not inflate them; client-observed latencies are reported beside.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from proc_cpu import CLK, proc_cpu_s

from durable_redis import Client, RedisStore, WorkerOptions
from durable_redis.devtools import WorkerProcesses
from durable_redis.storage.scripts import load_script_source

HERE = Path(__file__).resolve().parent
LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", "/tmp/durable_redis_bench/logs"))


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


# units of work of the durable peers' runs (their hello is 20 sequential instances)
PEER_UNITS = {"hello": 20, "chain100": 100, "fanout1000": 1000, "many_orch": 1000}
# the redis-server the harness started (its CPU is read from /proc); None: INFO cpu instead
REDIS_PID: int | None = None


def per_unit(cpu: dict[str, float], units: int, unit: str) -> dict[str, Any]:
    """Worker and Redis CPU per unit of work (µs), from a Meter's figures."""
    n = max(1, units)
    return {
        "unit": unit,
        "units": units,
        "worker_us_per_unit": round(cpu["worker_cpu_s"] * 1e6 / n, 1),
        "redis_us_per_unit": round(cpu["redis_cpu_s"] * 1e6 / n, 1),
    }


def system_busy_s() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK


# -- worker processes -------------------------------------------------------------------------
class Workers:
    """``count`` worker processes serving ``bench_app:app`` (the library's runner); stopped by
    their own pids."""

    def __init__(
        self, url: str, namespace: str, count: int, options: WorkerOptions | None, tag: str
    ):
        self.runner = WorkerProcesses(
            "bench_app:app",
            url,
            options,
            namespace=namespace,
            log_level="WARNING",
            log_dir=LOG_DIR,
            log_prefix=tag,
            cwd=HERE,
            new_session=True,
            grace=15.0,
        )
        self.stats_files = [LOG_DIR / f"{tag}-{i}.stats.json" for i in range(count)]
        for path in self.stats_files:
            self.runner.start_one(env={"DURABLE_REDIS_STATS_FILE": str(path)})

    def script_calls(self) -> Counter[str]:
        """Script calls by name over the processes' lives (written when they stopped)."""
        total: Counter[str] = Counter()
        for path in self.stats_files:
            with contextlib.suppress(OSError, ValueError):
                total.update(json.loads(path.read_text()))
        return total

    @property
    def pids(self) -> list[int]:
        return self.runner.pids

    def cpu_s(self) -> float:
        return sum(proc_cpu_s(pid) for pid in self.runner.pids)

    def alive(self) -> bool:
        return all(w.alive() for w in self.runner.workers)

    def stop(self) -> None:
        self.runner.stop()


class Run:
    """One measured run: a namespace, a client, a raw Redis connection, worker processes."""

    def __init__(
        self,
        url: str,
        processes: int = 1,
        options: WorkerOptions | None = None,
        tag: str = "run",
        start_workers: bool = True,
    ):
        self.url = url
        self.ns = f"b{uuid.uuid4().hex[:10]}"
        self.processes = processes
        self.options = options
        self.tag = tag
        self.start_workers = start_workers
        self.workers: Workers | None = None
        self.prefix = f"dr:{{{self.ns}:p0}}:"

    async def __aenter__(self) -> Run:
        import bench_app

        self.r = aioredis.Redis.from_url(self.url)
        self.client = Client(RedisStore.from_url(self.url, namespace=self.ns), bench_app.app)
        self.client._owns_store = True
        await self.client.__aenter__()
        self.app = bench_app
        if self.start_workers:
            await self.spawn()
        return self

    async def spawn(self) -> None:
        self.workers = Workers(
            self.url, self.ns, self.processes, self.options, f"{self.tag}-{self.ns}"
        )

    async def warm(self, n: int | None = None) -> None:
        """Run a few hellos so every worker process is up and has its connections."""
        n = n or 4 * self.processes
        ids = [await self.client.start(self.app.hello, i) for i in range(n)]
        await self.wait_terminal(n, timeout=60)
        for iid in ids:
            await self.client.purge(iid)
        await asyncio.sleep(0.2)

    async def __aexit__(self, *exc: object) -> None:
        if self.workers is not None:
            await asyncio.to_thread(self.workers.stop)
        with contextlib.suppress(Exception):
            await self.drop_namespace()
        await self.client.close()
        await self.r.aclose()

    async def drop_namespace(self) -> None:
        keys = [k async for k in self.r.scan_iter(match=f"dr:{{{self.ns}*", count=1000)]
        for i in range(0, len(keys), 500):
            await self.r.unlink(*keys[i : i + 500])

    async def server_ms(self) -> int:
        s, us = await self.r.time()
        return int(s) * 1000 + int(us) // 1000

    async def terminal_count(self) -> int:
        return int(await self.r.zcard(self.prefix + "idx:terminal"))

    async def wait_terminal(self, n: int, timeout: float, poll: float = 0.01) -> int:
        deadline = time.perf_counter() + timeout
        while True:
            done = await self.terminal_count()
            if done >= n:
                return done
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{done}/{n} instances terminal after {timeout}s")
            if self.workers is not None and not self.workers.alive():
                raise RuntimeError("a worker process exited; see " + str(LOG_DIR))
            await asyncio.sleep(poll)

    async def last_completion_ms(self) -> int:
        top = await self.r.zrange(self.prefix + "idx:terminal", -1, -1, withscores=True)
        return int(top[0][1]) if top else 0

    async def statuses(self, ids: list[str]) -> Counter[str]:
        c: Counter[str] = Counter()
        for iid in ids:
            st = await self.client.get_status(iid)
            c[st.status.value if st else "missing"] += 1
        return c

    async def redis_cpu_s(self) -> float:
        if REDIS_PID is not None:
            return proc_cpu_s(REDIS_PID)
        info = await self.r.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def start_many(run: Run, orch: Any, args: list[Any], concurrency: int = 64) -> list[str]:
    """Start one instance per arg, ``concurrency`` starts in flight at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(a: Any) -> str:
        async with sem:
            return await run.client.start(orch, a)

    return list(await asyncio.gather(*(one(a) for a in args)))


class Meter:
    """CPU of the workers, of Redis and of everything else on the machine during a run."""

    async def start(self, run: Run) -> None:
        self.run = run
        self.t0 = time.perf_counter()
        self.w0 = run.workers.cpu_s() if run.workers else 0.0
        self.r0 = await run.redis_cpu_s()
        self.s0 = system_busy_s()
        self.o0 = _own_cpu()

    async def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        w = (self.run.workers.cpu_s() if self.run.workers else 0.0) - self.w0
        r = await self.run.redis_cpu_s() - self.r0
        o = _own_cpu() - self.o0
        other = (system_busy_s() - self.s0) - w - r - o
        return {
            "wall_s": round(wall, 3),
            "worker_cpu_s": round(w, 4),
            "redis_cpu_s": round(r, 4),
            "harness_cpu_s": round(o, 2),
            "worker_cores": round(w / wall, 2),
            "redis_cores": round(r / wall, 2),
            "other_cores": round(max(0.0, other) / wall, 2),
        }


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- workloads ----------------------------------------------------------------------------------
async def w_hello(url: str, n: int = 200) -> dict[str, Any]:
    """1 orchestration -> 1 activity, sequentially; client latency: start, then
    ``wait_for_completion`` (woken by the instance's completion signal), as a user waits."""
    async with Run(url, tag="hello") as run:
        await run.warm()
        client_ms: list[float] = []
        engine_ms: list[float] = []
        m = Meter()
        await m.start(run)
        for i in range(n):
            t0 = time.perf_counter()
            iid = await run.client.start(run.app.hello, i)
            await run.client.wait_for_completion(iid, timeout=60)
            client_ms.append((time.perf_counter() - t0) * 1000)
            info = await run.client.store.get_instance(iid)
            assert info is not None and info.completed_at_ms is not None
            engine_ms.append(float(info.completed_at_ms - info.created_at_ms))
        cpu = await m.stop()
    return {
        "p50_ms": round(statistics.median(client_ms), 2),
        "p99_ms": round(pct(client_ms, 99), 2),
        "engine_p50_ms": statistics.median(engine_ms),
        "engine_p99_ms": pct(engine_ms, 99),
        "n": n,
        **cpu,
        **per_unit(cpu, n, "orchestration"),
    }


async def _one_big(url: str, orch: str, n: int, timeout: float) -> dict[str, Any]:
    async with Run(url, tag=orch) as run:
        await run.warm()
        m = Meter()
        await m.start(run)
        iid = await run.client.start(getattr(run.app, orch), n)
        out = await run.client.wait_for_completion(iid, timeout=timeout)
        cpu = await m.stop()
        info = await run.client.store.get_instance(iid)
        hist = await run.client.get_history(iid)
    assert out == n, out
    secs = (info.completed_at_ms - info.created_at_ms) / 1000
    return {
        "activities_per_s": round(n / secs, 1),
        "s": secs,
        "history_events": len(hist),
        **cpu,
        **per_unit(cpu, n, "chain step" if orch.startswith("chain") else "activity"),
    }


async def w_chain(url: str, n: int = 100, *, inline: bool = False) -> dict[str, Any]:
    """chain100 (``inline``: chain100_inline, its activity ``@app.activity(inline=True)``)."""
    return await _one_big(url, "chain_inline" if inline else "chain", n, timeout=300)


async def w_chain_local(url: str, n: int = 100) -> dict[str, Any]:
    """chain100_local: the chain of ``n`` steps as local activities (ctx.call_local_activity)."""
    return await _one_big(url, "chain_local", n, timeout=300)


async def w_fanout(url: str, n: int = 1000, *, inline: bool = False) -> dict[str, Any]:
    """fanout1000 (``inline``: fanout1000_inline, its activity run on the event loop)."""
    return await _one_big(url, "fanout_inline" if inline else "fanout", n, timeout=600)


async def w_many(url: str, n: int = 1000, processes: int = 1) -> dict[str, Any]:
    """n single-activity orchestrations started at once (a gather of starts)."""
    async with Run(url, processes=processes, tag=f"many{processes}") as run:
        await run.warm()
        m = Meter()
        await m.start(run)
        t0 = await run.server_ms()
        ids = await start_many(run, run.app.hello, list(range(n)))
        t_started = await run.server_ms()
        await run.wait_terminal(n, timeout=300)
        cpu = await m.stop()
        t1 = await run.last_completion_ms()
        st = await run.statuses(list(ids))
        assert run.workers is not None
        await asyncio.to_thread(run.workers.stop)
        calls = run.workers.script_calls()
    secs = (t1 - t0) / 1000
    units = n + 4 * processes  # the counts include the warm-up's hellos
    return {
        "script_calls_per_unit": round(sum(v for k, v in calls.items() if ":" not in k) / units, 2),
        "empty_claims_per_unit": round(calls["claim_orchestration:empty"] / units, 3),
        "empty_fetches_per_unit": round(calls["fetch_work_items:empty"] / units, 3),
        "orch_per_s": round(n / secs, 1),
        "s": secs,
        "start_s": (t_started - t0) / 1000,
        "processes": processes,
        "statuses": dict(st),
        **cpu,
        **per_unit(cpu, n, "orchestration"),
    }


async def w_timer(url: str, n: int = 100, ms: int = 1000) -> dict[str, Any]:
    """n orchestrations sleeping ms on durable timers; lateness = turn time - due time."""
    async with Run(url, tag="timer") as run:
        await run.warm()
        ids = await start_many(run, run.app.timer, [ms] * n)
        await run.wait_terminal(n, timeout=60)
        late = [float(await run.client.wait_for_completion(i, timeout=10)) for i in ids]
        done_late = []
        for iid in ids:
            info = await run.client.store.get_instance(iid)
            done_late.append(float(info.completed_at_ms - info.created_at_ms - ms))
    return {
        "late_p50_ms": statistics.median(late),
        "late_p99_ms": pct(late, 99),
        "late_max_ms": max(late),
        "completion_late_p50_ms": statistics.median(done_late),
        "completion_late_p99_ms": pct(done_late, 99),
    }


async def _jobs_done(run: Run) -> int:
    return int(await run.r.zcard(run.prefix + "jq:done"))


async def _jobs_state_counts(run: Run) -> Counter[str]:
    states: Counter[str] = Counter()
    cursor = 0
    jobs_key = run.prefix + "jq:jobs"
    while True:
        cursor, fields = await run.r.hscan(jobs_key, cursor, match="*|s", count=2000)
        states.update(v.decode() for v in fields.values())
        if cursor == 0:
            return states


async def w_drain(url: str, n: int = 10_000) -> dict[str, Any]:
    """n plain jobs (``client.enqueue_many`` of the no-op activity, untimed), then one worker
    process is spawned and drains them; like the queue peers, the time runs from spawn to the
    last completion (interpreter start and imports included), "steady" from the first one."""
    async with Run(url, tag="drain", start_workers=False) as run:
        t = time.perf_counter()
        await run.client.enqueue_many(run.app.noop, list(range(n)))
        enqueue_s = time.perf_counter() - t
        await run.spawn()
        m = Meter()
        await m.start(run)
        t0 = time.perf_counter()
        t_first = None
        while True:
            done = await _jobs_done(run)
            now = time.perf_counter()
            if done and t_first is None:
                t_first = now
            if done >= n:
                break
            if now - t0 > 300:
                raise TimeoutError(f"drain: {done}/{n} after 300 s")
            if run.workers is not None and not run.workers.alive():
                raise RuntimeError("the worker process exited; see " + str(LOG_DIR))
            await asyncio.sleep(0.005)
        cpu = await m.stop()
        states = await _jobs_state_counts(run)
    wall = now - t0
    return {
        "jobs_per_s": round(n / wall, 1),
        "steady_jobs_per_s": round((n - 1) / (now - t_first), 1)
        if t_first and now > t_first
        else None,
        "wall_s": round(wall, 3),
        "enqueue_s": round(enqueue_s, 3),
        "completed": states.get("completed", 0),
        "failed": states.get("failed", 0),
        "worker_cpu_ms_per_job": round(cpu["worker_cpu_s"] * 1000 / n, 3),
        "redis_cpu_ms_per_job": round(cpu["redis_cpu_s"] * 1000 / n, 3),
        **cpu,
    }


async def w_enqueue(url: str, n: int = 10_000) -> dict[str, Any]:
    """``enqueue_many`` of n jobs (no worker): jobs/s as the client sees it, and the Redis bytes
    per queued job (used_memory delta and MEMORY USAGE of the job keys)."""
    async with Run(url, tag="enqueue", start_workers=False) as run:
        await run.client.enqueue_many(run.app.noop, [0])  # connection and scripts loaded
        await run.drop_namespace()
        await run.client.store.initialize()
        u0 = await _used_memory(run)
        k0, b0 = await _ns_bytes(run)
        inputs = list(range(n))
        t = time.perf_counter()
        await run.client.enqueue_many(run.app.noop, inputs)
        secs = time.perf_counter() - t
        u1 = await _used_memory(run)
        k1, b1 = await _ns_bytes(run)
    return {
        "jobs_per_s": round(n / secs, 1),
        "s": round(secs, 4),
        "bytes_per_queued_job_used_memory": round((u1 - u0) / n),
        "bytes_per_queued_job_keys": round((b1 - b0) / n),
        "keys_added": k1 - k0,
    }


async def w_job_roundtrip(url: str, n: int = 300) -> dict[str, Any]:
    """One job at a time on an idle, warm worker: enqueue -> result seen by the client."""
    async with Run(url, tag="job-roundtrip") as run:
        for i in range(20):  # warm: worker up, activity measured fast, pub/sub subscribed
            await (await run.client.enqueue(run.app.noop, i)).result(timeout=60)
        await asyncio.sleep(0.2)
        lat = []
        for i in range(n):
            t = time.perf_counter()
            job = await run.client.enqueue(run.app.noop, i)
            await job.result(timeout=30)
            lat.append((time.perf_counter() - t) * 1000)
        done = await _jobs_done(run)
        u0 = await _used_memory(run)
        await run.r.delete(run.prefix + "jq:done", run.prefix + "jq:jobs")
        u1 = await _used_memory(run)
    return {
        "p50_ms": round(pct(lat, 50), 3),
        "p99_ms": round(pct(lat, 99), 3),
        "max_ms": round(max(lat), 3),
        "n": n,
        "bytes_per_retained_result_used_memory": round((u0 - u1) / max(1, done)),
    }


async def w_drain_orch(url: str, n: int = 10_000) -> dict[str, Any]:
    """n single-activity orchestrations enqueued first (untimed), then one worker process is
    spawned and drains them; like the queue peers, the time runs from spawn to the last
    completion (interpreter start and imports included) and "steady" from the first one."""
    async with Run(url, tag="drain-orch", start_workers=False) as run:
        t = time.perf_counter()
        await start_many(run, run.app.hello, list(range(n)))
        enqueue_s = time.perf_counter() - t
        await run.spawn()
        m = Meter()
        await m.start(run)
        t0 = time.perf_counter()
        t_first = None
        while True:
            done = await run.terminal_count()
            now = time.perf_counter()
            if done and t_first is None:
                t_first = now
            if done >= n:
                break
            if now - t0 > 300:
                raise TimeoutError(f"drain: {done}/{n} after 300 s")
            await asyncio.sleep(0.01)
        cpu = await m.stop()
        failed = await run.r.zcard(run.prefix + "idx:st:failed")
    wall = now - t0
    return {
        "jobs_per_s": round(n / wall, 1),
        "steady_jobs_per_s": round((n - 1) / (now - t_first), 1)
        if t_first and now > t_first
        else None,
        "wall_s": round(wall, 3),
        "enqueue_s": round(enqueue_s, 2),
        "failed": failed,
        **cpu,
        **per_unit(cpu, n, "job"),
    }


async def w_sessions(
    url: str, sessions: int = 100, turns: int = 20, processes: int = 4
) -> dict[str, Any]:
    async with Run(url, processes=processes, tag="sessions") as run:
        await run.warm()
        m = Meter()
        await m.start(run)
        t0 = await run.server_ms()
        ids = await start_many(run, run.app.session_turns, [turns] * sessions)
        await run.wait_terminal(sessions, timeout=300)
        cpu = await m.stop()
        t1 = await run.last_completion_ms()
        on_owner = total = failed = 0
        used_pids: set[int] = set()
        for iid in ids:
            st = await run.client.get_status(iid)
            if st is None or st.status.value != "completed":
                failed += 1
                continue
            pids = st.output
            used_pids.update(pids)
            on_owner += Counter(pids).most_common(1)[0][1]
            total += len(pids)
    secs = (t1 - t0) / 1000
    return {
        "turns_per_s": round(sessions * turns / secs, 1),
        "affinity_pct": round(100 * on_owner / total, 2) if total else 0.0,
        "failed": failed,
        "processes_used": len(used_pids),
        "s": secs,
        **cpu,
        **per_unit(cpu, sessions * turns, "turn"),
    }


async def _ns_bytes(run: Run) -> tuple[int, int]:
    """(keys, sum of MEMORY USAGE) over the run's namespace."""
    keys = [k async for k in run.r.scan_iter(match=f"dr:{{{run.ns}*", count=1000)]
    total = 0
    for k in keys:
        total += int(await run.r.memory_usage(k, samples=0) or 0)
    return len(keys), total


async def _used_memory(run: Run) -> int:
    """used_memory without client buffers (connection pools are not per-instance data)."""
    info = await run.r.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


async def w_memory(url: str, n: int = 1000, retention_s: float = 20.0) -> dict[str, Any]:
    """Redis bytes per retained completed hello instance, then after retention expires."""
    opts = WorkerOptions(retention=retention_s, janitor_interval=1.0)
    async with Run(url, options=opts, tag="memory") as run:
        await run.warm()
        await asyncio.sleep(0.5)
        k0, b0 = await _ns_bytes(run)
        u0 = await _used_memory(run)
        t_start = time.perf_counter()
        await start_many(run, run.app.hello, list(range(n)))
        await run.wait_terminal(n, timeout=120)
        k1, b1 = await _ns_bytes(run)
        u1 = await _used_memory(run)
        retained = await run.terminal_count()
        t_done = time.perf_counter()
        if t_done - t_start > retention_s * 0.8:
            note = "some instances may have expired before the measurement"
        else:
            note = ""
        deadline = time.perf_counter() + retention_s + 60
        while await run.terminal_count() and time.perf_counter() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.5)
        k2, b2 = await _ns_bytes(run)
        u2 = await _used_memory(run)
    return {
        "bytes_per_instance_keys": round((b1 - b0) / n),
        "bytes_per_instance_used_memory": round((u1 - u0) / n),
        "keys_per_instance": round((k1 - k0) / n, 2),
        "retained": retained,
        "after_retention_keys_delta": k2 - k0,
        "after_retention_bytes_delta": b2 - b0,
        "after_retention_used_memory_delta": u2 - u0,
        "back_to_baseline": k2 - k0 <= 0 and b2 - b0 <= 0,
        "note": note,
    }


# -- ceiling ---------------------------------------------------------------------------------------
def script_names() -> dict[str, str]:
    from durable_redis.storage.scripts import lua_dir

    out = {}
    for p in lua_dir().glob("*.lua"):
        src = load_script_source(p.stem)
        out[hashlib.sha1(src.encode()).hexdigest()] = p.stem
    return out


def lua_calls_per_s(host: str, port: int, requests: int = 100_000) -> dict[str, float]:
    """Trivial EVALSHA ("return 1") calls/s (redis-benchmark, 50 clients; unpipelined, -P 16)."""
    r = redis.Redis(host=host, port=port)
    sha = r.script_load("return 1")
    r.close()
    out = {}
    for label, extra in (("unpipelined", []), ("pipelined16", ["-P", "16"])):
        cmd = [
            "redis-benchmark",
            "-h",
            host,
            "-p",
            str(port),
            "-q",
            "-c",
            "50",
            "-n",
            str(requests),
            *extra,
        ]
        cmd += ["evalsha", sha, "0"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        text = res.stdout.replace("\r", "\n")
        rate = 0.0
        for line in text.splitlines():
            if "requests per second" in line:
                rate = float(line.split(":", 1)[1].split("requests")[0].strip())
        out[label] = rate
    return out


class Monitor:
    """MONITOR in a thread: counts client commands (round trips) and script calls by name."""

    def __init__(self, host: str, port: int):
        self.r = redis.Redis(host=host, port=port)
        self.names = script_names()
        self.client_cmds: Counter[str] = Counter()
        self.scripts: Counter[str] = Counter()
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _run(self) -> None:
        with self.r.monitor() as mon:
            self.ready.set()
            conn = mon.connection
            while not self.stop.is_set():
                if not conn.can_read(timeout=0.1):
                    continue
                ev = mon.next_command()
                if ev.get("client_type") == "lua":
                    continue
                cmd = ev["command"].split(" ")
                name = cmd[0].strip('"').lower()
                if name in ("info", "monitor", "time") or "MONITOR_END" in ev["command"]:
                    continue
                self.client_cmds[name] += 1
                if name in ("evalsha", "eval") and len(cmd) > 1:
                    self.scripts[self.names.get(cmd[1].strip('"'), "?")] += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.r.close()


async def w_ceiling(
    url: str, host: str, port: int, hello_n: int = 50, chain_n: int = 50
) -> dict[str, Any]:
    """Round trips and script calls per hello orchestration, per activity and per turn."""
    out: dict[str, Any] = {"lua_calls_per_s": await asyncio.to_thread(lua_calls_per_s, host, port)}
    for label, orch, arg, count in (
        ("hello", "hello", None, hello_n),
        ("chain", "chain", chain_n, 1),
        ("fanout", "fanout", 200, 1),
    ):
        async with Run(url, tag=f"ceiling-{label}") as run:
            await run.warm()
            await asyncio.sleep(0.3)
            mon = await asyncio.to_thread(Monitor, host, port)
            r0 = await run.redis_cpu_s()
            for _ in range(count):
                iid = await run.client.start(getattr(run.app, orch), arg)
                await run.client.wait_for_completion(iid, timeout=120)
            r1 = await run.redis_cpu_s()
            await asyncio.sleep(0.2)
            await asyncio.to_thread(mon.close)
        scripts = dict(mon.scripts)
        turns = scripts.get("commit_turn", 0)
        acts = scripts.get("ack_work_item", 0)
        rt = sum(mon.client_cmds.values())
        out[label] = {
            "instances": count,
            "turns": turns,
            "activities": acts,
            "round_trips": rt,
            "script_calls": sum(scripts.values()),
            "scripts": scripts,
            "other_cmds": {
                k: v for k, v in mon.client_cmds.items() if k not in ("evalsha", "eval")
            },
            "redis_cpu_ms": round((r1 - r0) * 1000, 1),
        }
    h = out["hello"]
    per_orch_scripts = h["script_calls"] / h["instances"]
    per_orch_rt = h["round_trips"] / h["instances"]
    act_scripts = sum(
        h["scripts"].get(s, 0) for s in ("fetch_work_items", "ack_work_item", "renew_work_items")
    )
    turn_scripts = h["script_calls"] - act_scripts
    out["per_hello"] = {
        "round_trips": round(per_orch_rt, 2),
        "script_calls": round(per_orch_scripts, 2),
    }
    out["per_activity_scripts"] = round(act_scripts / max(1, h["activities"]), 2)
    out["per_turn_scripts"] = round(turn_scripts / max(1, h["turns"]), 2)
    c = out["chain"]
    out["chain_per_activity"] = {
        "round_trips": round(c["round_trips"] / chain_n, 2),
        "script_calls": round(c["script_calls"] / chain_n, 2),
        "turns": round(c["turns"] / chain_n, 2),
    }
    f = out["fanout"]
    out["fanout_per_activity"] = {
        "round_trips": round(f["round_trips"] / 200, 2),
        "script_calls": round(f["script_calls"] / 200, 2),
        "turns": f["turns"],
    }
    lua = out["lua_calls_per_s"]["unpipelined"]
    out["implied_orch_per_s"] = round(lua / per_orch_scripts, 1)
    out["implied_chain_act_per_s"] = round(
        lua / max(0.01, out["chain_per_activity"]["script_calls"]), 1
    )
    out["implied_fanout_act_per_s"] = round(
        lua / max(0.01, out["fanout_per_activity"]["script_calls"]), 1
    )
    out["redis_cpu_ms_per_hello"] = round(h["redis_cpu_ms"] / h["instances"], 3)
    return out


async def w_fanout_scaling(
    url: str, widths: tuple[int, ...] = (250, 500, 1000, 2000)
) -> dict[str, Any]:
    """fanout N for several N: worker CPU per activity grows with N if every turn replays all."""
    rows = []
    for n in widths:
        r = await _one_big(url, "fanout", n, timeout=600)
        rows.append(
            {
                "n": n,
                "s": r["s"],
                "activities_per_s": r["activities_per_s"],
                "worker_cpu_ms_per_activity": round(r["worker_cpu_s"] * 1000 / n, 3),
                "redis_cpu_ms_per_activity": round(r["redis_cpu_s"] * 1000 / n, 3),
                "other_cores": r["other_cores"],
            }
        )
    return {"rows": rows}
