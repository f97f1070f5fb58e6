"""``durable-redis workers`` (the live worker registry) and ``durable-redis doctor``, run as a
user runs them (the CLI as a subprocess) against real worker processes and real Redis servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from durable_redis.client import Client
from durable_redis.devtools.server import RedisServer
from durable_redis.storage import doctor

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0  # the pool's lock_timeout (tests/e2e/e2e_helpers.FAST_OPTIONS)


def cli(redis_url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "durable_redis.cli",
            *args,
            "--redis-url",
            redis_url,
            "--namespace",
            namespace,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(ROOT),
    )


def listed(redis_url: str, namespace: str) -> dict[int, dict[str, Any]]:
    done = cli(redis_url, namespace, "workers")
    assert done.returncode == 0, done.stderr
    return {w["pid"]: w for w in json.loads(done.stdout)["workers"]}


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def test_workers_lists_live_workers_with_in_flight_work_and_drops_dead_ones(
    redis_url: str, namespace: str, pool: Any, tmp_path: Path
) -> None:
    a, b = pool.start(), pool.start()
    wait_for(lambda: {a.pid, b.pid} <= set(listed(redis_url, namespace)), 20, "both listed")
    record = listed(redis_url, namespace)[a.pid]
    assert record["version"] and record["host"] and record["ttl_ms"] == int(LEASE_S * 1000)
    assert record["worker_id"].split(":")[1] == str(a.pid)

    # in-flight work shows up at the next heartbeat (every renewal, 0.5 s here)
    import e2e_app

    async def start_hold() -> None:
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            await c.start("child_hold", {"dir": str(tmp_path), "name": "h"}, instance_id="h-1")

    anyio.run(start_hold)
    wait_for(
        lambda: sum(w["activities_in_flight"] for w in listed(redis_url, namespace).values()) == 1,
        20,
        "one activity in flight",
    )
    (tmp_path / "release-h").touch()

    # a killed worker drops out within one lease (plus one renewal interval of slack)
    b.kill()
    took = wait_for(lambda: b.pid not in listed(redis_url, namespace), LEASE_S + 3, "b gone")
    assert took <= LEASE_S + 1.5, took  # one lease, plus a CLI run of polling slack
    assert a.pid in listed(redis_url, namespace)

    # a gracefully stopped one is removed at once, long before its record would expire
    a.terminate()
    assert a.wait(20) == 0
    assert a.pid not in listed(redis_url, namespace)


def test_workers_on_an_unknown_namespace_creates_nothing(redis_url: str, namespace: str) -> None:
    done = cli(redis_url, namespace, "workers")
    assert done.returncode == 0 and json.loads(done.stdout)["workers"] == []
    r = redis.Redis.from_url(redis_url)
    try:
        assert r.keys(f"dr:{{{namespace}}}*") == []
    finally:
        r.close()


def verdicts(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    report = json.loads(done.stdout)
    return {c["name"]: c["verdict"] for c in report["checks"]}


def test_doctor_fails_on_eviction_and_passes_once_fixed(namespace: str, pool: Any) -> None:
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        try:
            r.config_set("maxmemory-policy", "allkeys-lru")
            bad = cli(server.url, namespace, "doctor")
            assert bad.returncode == 1, bad.stdout + bad.stderr
            found = verdicts(bad)
            assert found["maxmemory-policy"] == "fail"
            assert found["schema"] == "warn"  # no namespace yet: doctor must not create it
            assert found["workers"] == "warn"
            assert r.keys("dr:*") == []

            r.config_set("maxmemory-policy", "noeviction")
            r.config_set("appendonly", "yes")
            r.config_set("appendfsync", "everysec")
            r.config_set("maxmemory", str(512 * 1024 * 1024))
            pool.redis_url = server.url
            worker = pool.start()
            wait_for(lambda: r.zcard(f"dr:{{{namespace}}}:workers") == 1, 20, "the worker")
            good = cli(server.url, namespace, "doctor")
            assert good.returncode == 0, good.stdout
            found = verdicts(good)
            for name in ("maxmemory-policy", "persistence", "memory", "schema", "workers"):
                assert found[name] == "ok", (name, good.stdout)
            assert found["clock"] == "ok" and found["latency"] == "ok"
            text = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "durable_redis.cli",
                    "doctor",
                    "--redis-url",
                    server.url,
                    "--namespace",
                    namespace,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            assert "verdict: ok" in text.stdout
            worker.terminate()
            worker.wait(20)
        finally:
            r.close()


@pytest.mark.parametrize(
    ("version", "verdict"),
    [("7.2.4", "ok"), ("8.0.0", "ok"), ("6.2.14", "warn"), ("5.0.7", "fail")],
)
def test_version_verdicts(version: str, verdict: str) -> None:
    assert doctor.check_version({"redis_version": version}).verdict == verdict


def test_memory_clock_and_latency_verdicts() -> None:
    assert doctor.check_memory({"used_memory": 10, "maxmemory": 0}).verdict == "warn"
    assert doctor.check_memory({"used_memory": 50, "maxmemory": 100}).verdict == "ok"
    assert doctor.check_memory({"used_memory": 80, "maxmemory": 100}).verdict == "warn"
    assert doctor.check_memory({"used_memory": 95, "maxmemory": 100}).verdict == "fail"
    assert doctor.check_clock(200).verdict == "ok"
    assert doctor.check_clock(-5_000).verdict == "warn"
    assert doctor.check_clock(60_000).verdict == "fail"
    assert doctor.check_latency([0.1, 0.2, 0.3]).verdict == "ok"
    assert doctor.check_latency([80, 90, 100]).verdict == "fail"
    assert doctor.check_persistence("yes", "no").verdict == "warn"
    assert doctor.check_eviction(None).verdict == "skip"
