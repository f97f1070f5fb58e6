"""``durable-redis worker ... --metrics-port N``: real worker processes (two, on N and N + 1)
serve Prometheus metrics with the documented names while they run real work."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from durable_redis.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "tests" / "e2e"

DOCUMENTED = {
    "durable_redis_turns",
    "durable_redis_turn_duration_seconds",
    "durable_redis_activities",
    "durable_redis_activity_duration_seconds",
    "durable_redis_lease_renewals",
    "durable_redis_lease_losses",
    "durable_redis_turns_in_flight",
    "durable_redis_activities_in_flight",
    "durable_redis_sessions_owned",
    "durable_redis_worker_info",
}


def two_free_ports() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with contextlib.suppress(OSError), socket.socket() as s2:
            s2.bind(("127.0.0.1", port + 1))
            return port
    raise AssertionError("no two consecutive free ports")


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: list[dict[str, Any]], name: str, **labels: str) -> float:
    total = 0.0
    for fams in families:
        family = fams.get(name.removesuffix("_total").removesuffix("_count"))
        if family is None:
            continue
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_worker_processes_serve_metrics(redis_url: str, namespace: str, tmp_path: Path) -> None:
    from tests.e2e import e2e_app

    port = two_free_ports()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(E2E), str(ROOT)])}
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable_redis.cli",
            "worker",
            "e2e_app:app",
            "--redis-url",
            redis_url,
            "--namespace",
            namespace,
            "--processes",
            "2",
            "--metrics-port",
            str(port),
            "--log-format",
            "json",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(ROOT),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                scraped = [scrape(port), scrape(port + 1)]
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "worker.log").read_text()
                assert time.monotonic() < deadline, "no /metrics within 30 s"
                time.sleep(0.1)
        assert set(scraped[0]) >= DOCUMENTED, set(scraped[0])
        assert set(scraped[1]) >= DOCUMENTED

        async def work() -> None:
            async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
                ids = [await c.start("hello", f"n{i}") for i in range(4)]
                ids.append(await c.start("catches", "boom"))
                for iid in ids:
                    await c.wait_for_completion(iid, timeout=30)

        anyio.run(work)
        # the sums over both processes cover all the work; a worker counts right after its
        # commit returns, so the last increments may trail the client by a moment
        deadline = time.monotonic() + 10
        while True:
            scraped = [scrape(port), scrape(port + 1)]
            turns = sample(scraped, "durable_redis_turns_total", outcome="completed")
            if turns >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        ok = sample(
            scraped, "durable_redis_activities_total", activity="whoami", outcome="completed"
        )
        assert ok == 4
        failed = sample(
            scraped, "durable_redis_activities_total", activity="always_fails", outcome="failed"
        )
        assert failed == 1
        done = sample(
            scraped, "durable_redis_turns_total", orchestration="hello", outcome="completed"
        )
        assert done == 4
        assert sample(scraped, "durable_redis_turns_total", orchestration="hello") >= 8
        timed = sample(scraped, "durable_redis_activity_duration_seconds_count", activity="whoami")
        assert timed == 4
        assert sample(scraped, "durable_redis_turn_duration_seconds_count") >= 10
        assert sample(scraped, "durable_redis_activities_in_flight") == 0
        workers = [
            s.labels["worker_id"] for f in scraped for s in f["durable_redis_worker_info"].samples
        ]
        assert len(set(workers)) == 2
        # a process serves /metrics before its worker logs "started": with the work done
        # this fast, wait for both lines (bounded) before the stop, or one may never be written
        deadline = time.monotonic() + 10
        while (tmp_path / "worker.log").read_text().count(" started for app ") < 2:
            assert time.monotonic() < deadline, "a worker never logged its start"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
    assert proc.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
    # --log-format json reached both processes: every line one object, ids as fields
    lines = [line for line in (tmp_path / "worker.log").read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == len(lines) - 1, lines  # all but the CLI's banner
    started = [r for r in records if " started for app " in r["message"]]
    assert {r["worker_id"] for r in started} == set(workers)
    assert all(r["level"] and r["logger"] and r["time"].endswith("Z") for r in records)
