"""``durable-redis demo``: drives the demo app (:mod:`durable_redis.demo`) end to end.

A private Redis (unless a URL is given), two worker processes (the library's
:class:`~durable_redis.devtools.WorkerProcesses`), a few conversations, progress while they run,
and a report of which worker ran every turn.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from durable_redis.demo import (
    _CUSTOMERS,
    _LINES,
    WORKER_COUNT,
    Conversation,
    ConversationResult,
    app,
    conversation,
)

if TYPE_CHECKING:
    from durable_redis.devtools import WorkerProcesses

__all__ = ["run_demo"]


def run_demo(
    *,
    redis_url: str | None = None,
    namespace: str = "default",
    conversations: int = 4,
    turns: int = 5,
    as_json: bool = False,
) -> int:
    """Run the demo end to end; return 0 if every conversation stayed on one worker."""
    from durable_redis.devtools import RedisServer
    from durable_redis.storage._url import redact_url

    if not 1 <= conversations <= 50 or not 1 <= turns <= 50:
        print("durable-redis demo: --conversations and --turns must be 1..50", file=sys.stderr)
        return 2
    out = _Printer(quiet=as_json)
    server: RedisServer | None = None
    workers: WorkerProcesses | None = None
    logs = tempfile.mkdtemp(prefix="durable-redis-demo-logs-")
    started = time.monotonic()
    try:
        if redis_url is None:
            server = RedisServer(persistence=True).start()
            redis_url = server.url
            out(
                f"started a private Redis (pid {server.pid}, AOF on) at {redis_url}"
                f"\n  binary: {server.executable}"
            )
        else:
            out(f"using the Redis at {redact_url(redis_url)} (namespace {namespace!r})")
        workers = _workers(redis_url, namespace, conversations, Path(logs))
        workers.start(WORKER_COUNT)
        out(
            f"started {len(workers.workers)} worker processes: "
            + ", ".join(f"pid {pid}" for pid in workers.pids)
            + f" (max_sessions_per_worker={math.ceil(conversations / WORKER_COUNT)})"
        )
        if not workers.wait_ready(timeout=20.0):
            out("workers did not start in time:")
            for w in workers.workers:
                out(f"--- worker {w.pid} ---\n{w.log_tail()}")
            return 1
        import anyio

        report = anyio.run(_drive, redis_url, namespace, conversations, turns, out)
    except KeyboardInterrupt:
        out("interrupted")
        return 130
    finally:
        # Clean up first, report after: a failing stdout must not leak processes.
        codes = workers.stop() if workers is not None else []
        if server is not None:
            server.stop()
        if server is not None or all(c == 0 for c in codes):
            shutil.rmtree(logs, ignore_errors=True)
        with contextlib.suppress(OSError):
            if workers is not None and workers.workers:
                out("stopped the workers (SIGTERM): exit codes " + ", ".join(map(str, codes)))
            if server is not None:
                out("stopped the private Redis")
            if Path(logs).exists():
                out(f"worker logs kept in {logs}")
    ok = bool(report["ok"]) and all(c == 0 for c in codes)
    report["ok"] = ok
    report["worker_exit_codes"] = codes
    report["seconds"] = round(time.monotonic() - started, 2)
    if as_json:
        print(json.dumps(report, sort_keys=True))
    else:
        out(f"demo {'succeeded' if ok else 'FAILED'} in {report['seconds']:.1f}s")
    return 0 if ok else 1


class _Printer:
    """Progress lines on stdout (none with ``--json``); a closed stdout stops the printing."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        if self.quiet:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            self.quiet = True


def _workers(url: str, namespace: str, conversations: int, logs: Path) -> WorkerProcesses:
    from durable_redis.devtools import WorkerProcesses
    from durable_redis.runtime import WorkerOptions

    options = WorkerOptions(
        max_sessions_per_worker=math.ceil(conversations / WORKER_COUNT),
        fetch_wait=0.5,
        shutdown_grace_period=5.0,
        janitor_interval=None,
    )
    return WorkerProcesses(
        "durable_redis.demo:app",
        url,
        options,
        namespace=namespace,
        log_dir=logs,
        new_session=True,  # Ctrl-C reaches them only through us (SIGTERM)
    )


async def _drive(
    url: str, namespace: str, conversations: int, turns: int, out: _Printer
) -> dict[str, Any]:
    import anyio

    from durable_redis.client import Client

    run_id = uuid.uuid4().hex[:8]
    async with Client.from_url(url, namespace=namespace, app=app) as client:
        ids: dict[str, str] = {}
        for i in range(conversations):
            customer = _CUSTOMERS[i % len(_CUSTOMERS)] + ("" if i < len(_CUSTOMERS) else str(i))
            messages = [_LINES[t % len(_LINES)] for t in range(turns)]
            ids[customer] = await client.start(
                conversation,
                Conversation(customer, messages),
                instance_id=f"demo-{run_id}-{customer}",
            )
        out(f"started {conversations} conversations of {turns} turns each (run {run_id})")

        shown: dict[str, Any] = {}
        states: dict[str, Any] = {}
        deadline = anyio.current_time() + 60.0
        while anyio.current_time() < deadline:
            for customer, instance_id in ids.items():
                if customer in states and states[customer].is_terminal:
                    continue  # its end was shown
                state = await client.get_status(instance_id)
                if state is None:
                    continue
                states[customer] = state
                progress = state.custom_status
                if state.is_terminal:
                    last = _last_turn(state.output)
                    if last is not None and shown.get(customer) != last:
                        out(f"  {customer:<8} {_progress_text(last)}")  # polled past it
                    progress = f"{state.status.value}"
                if progress != shown.get(customer):
                    shown[customer] = progress
                    out(f"  {customer:<8} {_progress_text(progress)}")
            if len(states) == len(ids) and all(s.is_terminal for s in states.values()):
                break
            await anyio.sleep(0.1)

    report_rows: list[dict[str, Any]] = []
    ok = True
    out("\nwhat happened:")
    for customer, instance_id in ids.items():
        state = states.get(customer)
        status = state.status.value if state is not None else "missing"
        row: dict[str, Any] = {"customer": customer, "instance_id": instance_id, "status": status}
        result = state.output if state is not None else None
        if status == "completed" and isinstance(result, ConversationResult):
            pids = sorted(set(result.worker_pids))
            one_worker = len(pids) == 1
            row.update(asdict(result))
            row["one_worker"] = one_worker
            ok = ok and one_worker and result.remembered_all and len(result.worker_pids) == turns
            where = (
                f"all {len(result.worker_pids)} turns on worker pid {pids[0]}"
                if one_worker
                else "turns on workers " + ", ".join(str(p) for p in result.worker_pids)
            )
            memory = "yes" if result.remembered_all else "NO"
            out(
                f"  {customer:<8} session {result.session_id}: {where}; every turn saw the "
                f"earlier ones in memory: {memory}; score {result.score}"
            )
        else:
            ok = False
            error = state.error if state is not None else None
            out(f"  {customer:<8} {status}" + (f": {error}" if error else ""))
        report_rows.append(row)
    used = sorted({p for r in report_rows for p in r.get("worker_pids", [])})
    out(
        f"every conversation stayed on one worker: {'yes' if ok else 'NO'} "
        f"(workers used: {', '.join(str(p) for p in used) or 'none'})"
    )
    return {"ok": ok, "conversations": report_rows, "workers_used": used}


def _last_turn(result: Any) -> dict[str, Any] | None:
    """The custom status of a finished conversation's last turn (as the progress shows it)."""
    if not isinstance(result, ConversationResult) or not result.worker_pids:
        return None
    turns = len(result.worker_pids)
    return {"turn": turns, "of": turns, "worker_pid": result.worker_pids[-1]}


def _progress_text(progress: Any) -> str:
    if isinstance(progress, dict) and "turn" in progress:
        return (
            f"turn {progress['turn']}/{progress['of']} done on worker pid {progress['worker_pid']}"
        )
    if progress is None:
        return "waiting for a worker"
    return str(progress)
