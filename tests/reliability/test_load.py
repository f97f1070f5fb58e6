"""Load: 20,000 activities (200 orchestrations x 100) on 4 worker processes, then retention.

No errors, every result right, every completion recorded once, and after retention the janitor
has removed every instance: the namespace's keys and Redis's ``used_memory`` are back to their
baseline. ``DURABLE_REDIS_RELIABILITY_FULL=1`` runs 100,000 activities (1,000 orchestrations).
A private ``redis-server`` keeps the memory figures clean.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import rel_app
from rel_support import (
    execution_counts,
    full_size,
    history_check,
    namespace_keys,
    record_figures,
    redis_info,
    worker_errors,
)

from durable_redis.client import Client
from durable_redis.devtools.server import RedisServer
from durable_redis.errors import DurableRedisError

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(900)]

PER_ORCHESTRATION = 100
WORKERS = 4
RETENTION_S = 1.0
# What "back to baseline" allows: no key survives, but Redis keeps some memory after a burst
# (hash tables of the keyspace shrink lazily, allocator slack): ~0.1-0.3 MB of dataset and
# ~1.2-3.2 MB in all (client buffers vary run to run) after 20,000-100,000 activities whose peak
# was 15-47 MB.
DATASET_SLACK_BYTES = 1 << 20
MEMORY_SLACK_BYTES = 8 << 20


@pytest.fixture
def private_server(tmp_path: Path) -> Any:
    with RedisServer() as server:
        yield server


async def test_load_then_retention_returns_memory_to_baseline(
    pools: Any, private_server: RedisServer, namespace: str, workdir: Path
) -> None:
    url = private_server.url
    orchestrations = 1000 if full_size() else 200
    pool = pools(url, namespace)
    options = {
        "activity_concurrency": 32,
        "batch_size": 32,
        "janitor_interval": 1.0,
        "retention": RETENTION_S,
        "lock_timeout": 10.0,
        "renewal_interval": 2.0,
    }
    workers = [pool.start("rel_app:app", **options) for _ in range(WORKERS)]
    async with Client.from_url(url, namespace=namespace, app=rel_app.app) as client:
        # Baseline: the namespace exists, the workers are connected and idle.
        warm = {"dir": str(workdir), "n": 2, "batch": 2}
        await client.start("fanout", warm, instance_id="warm-up")  # loads every script
        assert await client.wait_for_completion("warm-up", timeout=60) == 1
        await _until_removed(client, 60)
        baseline_keys = namespace_keys(url, namespace)
        info = redis_info(url)
        baseline, baseline_dataset = info["used_memory"], info["used_memory_dataset"]

        args = {"dir": str(workdir), "n": PER_ORCHESTRATION, "batch": 20, "report": True}
        started = time.monotonic()
        ids = [
            await client.start("fanout", args, instance_id=f"load-{i}")
            for i in range(orchestrations)
        ]
        # Results are reported by the orchestrations themselves (a last activity appends them to
        # a file), because retention removes finished instances within a second or two.
        peak = baseline
        histories_checked = recorded_twice = 0
        expected = sum(range(PER_ORCHESTRATION))
        results: dict[str, int] = {}
        deadline = time.monotonic() + 600
        sample = iter(ids[::10])
        while len(results) < orchestrations:
            assert time.monotonic() < deadline, f"{orchestrations - len(results)} never finished"
            results = _results(workdir)
            peak = max(peak, redis_info(url)["used_memory"])
            iid = next(sample, None)
            if iid is not None:  # a sample of histories, while they still exist
                try:
                    state = await client.wait_for_state(iid, timeout=600)
                    counts = history_check(await client.get_history(iid))
                except DurableRedisError:  # removed by retention before we looked
                    continue
                if state.output is not None and counts["scheduled"]:
                    assert state.output == expected
                    histories_checked += 1
                    recorded_twice += counts["completed_twice"]
            else:
                await anyio.sleep(0.2)
        assert set(results) == set(ids)
        assert set(results.values()) == {expected}
        elapsed = time.monotonic() - started
        removed_in = await _until_removed(client, 120)
    await anyio.sleep(1.0)
    info = redis_info(url)
    after, after_dataset = info["used_memory"], info["used_memory_dataset"]
    after_keys = namespace_keys(url, namespace)
    runs = execution_counts(workdir)
    errors = [line for w in workers for line in worker_errors(w.log())]
    total = orchestrations * PER_ORCHESTRATION
    record_figures(
        "load",
        {
            "activities": total,
            "orchestrations": orchestrations,
            "workers": WORKERS,
            "elapsed_s": round(elapsed, 1),
            "activities_per_s": round(total / elapsed),
            "executions": sum(runs.values()),
            "lost": total + 2 - len(runs),
            "repeated_executions": sum(n - 1 for n in runs.values()),
            "recorded_twice_in_sampled_histories": recorded_twice,
            "histories_sampled": histories_checked,
            "worker_error_lines": len(errors),
            "used_memory_baseline": baseline,
            "used_memory_peak_sampled": peak,
            "used_memory_after_retention": after,
            "used_memory_dataset_baseline": baseline_dataset,
            "used_memory_dataset_after_retention": after_dataset,
            "retention_s": RETENTION_S,
            "janitor_done_s_after_last_completion": round(removed_in, 1),
            "namespace_keys_baseline": len(baseline_keys),
            "namespace_keys_after": len(after_keys),
        },
    )
    assert errors == [], errors[:20]
    assert len(runs) == total + 2 and recorded_twice == 0
    assert after_keys == baseline_keys
    # The data set is back to its baseline; the total (client buffers, allocator) nearly so.
    assert after_dataset <= baseline_dataset + DATASET_SLACK_BYTES, (
        baseline_dataset,
        after_dataset,
    )
    assert after <= baseline + MEMORY_SLACK_BYTES, (baseline, peak, after)


def _results(directory: Path) -> dict[str, int]:
    path = directory / "results.log"
    if not path.exists():
        return {}
    rows = (line.split(" ") for line in path.read_text().splitlines())
    return {iid: int(total) for iid, total in rows}


async def _until_removed(client: Client, timeout: float) -> float:
    """Wait until the janitor has removed every instance; return how long it took."""
    started = time.monotonic()
    while True:
        page = await client.list_instances(limit=1)
        if not page.instances:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, "the janitor left instances behind"
        await anyio.sleep(0.2)
