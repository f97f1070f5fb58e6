"""Helpers of the reliability suite: figures, execution counting, history checks, Redis control."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from durable_redis.core import events as ev
from durable_redis.devtools.server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
FIGURES_ENV = "DURABLE_REDIS_RELIABILITY_JSON"
FULL_ENV = "DURABLE_REDIS_RELIABILITY_FULL"


def full_size() -> bool:
    """Run the fault and load tests at the sizes of issue 6 (slow: minutes, not seconds)."""
    return os.environ.get(FULL_ENV, "") not in ("", "0")


def figures_path() -> Path:
    return Path(os.environ.get(FIGURES_ENV, ROOT / "benchmarks" / "results" / "reliability.json"))


def record_figures(test: str, figures: dict[str, Any]) -> None:
    """Merge this test's figures into the JSON file docs/reliability.md is written from."""
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[test] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def executions(directory: Path) -> list[tuple[str, int, int, float]]:
    """Lines of ``executions.log``: (instance, activity id, pid, time)."""
    path = directory / "executions.log"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        iid, aid, pid, at = line.split(" ")
        rows.append((iid, int(aid), int(pid), float(at)))
    return rows


def execution_counts(directory: Path) -> Counter[tuple[str, int]]:
    return Counter((iid, aid) for iid, aid, _, _ in executions(directory))


def history_check(history: list[Any]) -> dict[str, int]:
    """Counts of a decoded history: scheduled, completed, duplicated completions, failures."""
    scheduled = [e.event_id for e in history if isinstance(e, ev.ActivityScheduled)]
    completed = [e.activity_id for e in history if isinstance(e, ev.ActivityCompleted)]
    failed = [e.activity_id for e in history if isinstance(e, ev.ActivityFailed)]
    ids = [e.event_id for e in history]
    return {
        "scheduled": len(scheduled),
        "completed": len(completed),
        "completed_twice": len(completed) - len(set(completed)),
        "failed": len(failed),
        "unscheduled_completions": len(set(completed) - set(scheduled)),
        "dense_ids": int(ids == list(range(1, len(ids) + 1))),
        "terminal_events": sum(
            isinstance(e, ev.OrchestrationCompleted | ev.OrchestrationFailed) for e in history
        ),
    }


def kill9(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL our own child by pid and reap it."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def kill_server(server: RedisServer) -> None:
    """SIGKILL a RedisServer we started (no shutdown, no final fsync), keep its directory."""
    assert server.process is not None
    kill9(server.process)
    if server.process.stderr:
        server.process.stderr.close()
    server.process = None


def redis_info(url: str, section: str = "memory") -> dict[str, Any]:
    import redis

    r = redis.Redis.from_url(url)
    try:
        info: dict[str, Any] = r.info(section)
        return info
    finally:
        r.close()


def namespace_keys(url: str, namespace: str) -> list[bytes]:
    import redis

    r = redis.Redis.from_url(url)
    try:
        return sorted(r.scan_iter(match=f"dr:{{{namespace}*", count=1000))
    finally:
        r.close()


def worker_errors(log: str) -> list[str]:
    """Log lines at ERROR or CRITICAL, and tracebacks."""
    return [
        line
        for line in log.splitlines()
        if " ERROR " in line or " CRITICAL " in line or "Traceback" in line
    ]


def scheduled_ids(history: list[Any]) -> list[int]:
    return [e.event_id for e in history if isinstance(e, ev.ActivityScheduled)]
