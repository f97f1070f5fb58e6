"""Version routing with real worker processes (issue 16): one worker process runs v1 code, one
v2; each instance runs on the code of the version it recorded at its start, the other worker
leaves it alone (never failed, no attempt consumed); an instance of a version no worker has
waits, and the first worker deployed with it takes it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from e2e_helpers import eventually

from durable_redis.client import Client
from durable_redis.storage.base import InstanceStatus

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
async def client(e2e_redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client.from_url(e2e_redis_url, namespace=namespace) as c:  # no app: by name
        yield c


async def test_v1_and_v2_workers_each_take_only_their_version(workers: Any, client: Client) -> None:
    # a long back-off: a worker that held back an instance it lacks the version of (instead of
    # leaving it to the other one at once) would make it wait 30 s
    slow = {"unregistered_backoff": 30.0, "unregistered_backoff_max": 60.0}
    v1 = workers.start("e2e_versions:v1", max_attempts=2, orchestration_concurrency=2, **slow)
    v2 = workers.start("e2e_versions:v2", max_attempts=2, orchestration_concurrency=2, **slow)
    await eventually(
        lambda: _started(v1, v2), timeout=60, message="both workers started (their log says so)"
    )
    ids = [(f"q{i}", "1" if i % 2 else "2") for i in range(20)]
    began = time.monotonic()
    for iid, version in ids:
        await client.start("quote", "book", instance_id=iid, version=version)
    for iid, version in ids:
        result = await client.wait_for_completion(iid, timeout=60)
        pid = v1.pid if version == "1" else v2.pid
        assert result == f"v{version} code in pid {pid}: book costs 4", (iid, result)
    took = time.monotonic() - began
    for iid, _ in ids:
        history = await client.get_history(iid)
        assert not any("Failed" in type(e).__name__ for e in history), history
    assert took < 20, took  # nobody waited out a 30 s back-off

    # a version no worker has: left alone, never failed, until a worker that has it comes
    await client.start("quote", "pen", instance_id="q-v3", version="3")
    await _passed_over_by(v1, v2, instance_id="q-v3")
    state = await client.get_status("q-v3")
    assert state is not None and state.status is InstanceStatus.PENDING and state.error is None
    v3 = workers.start("e2e_versions:v3")
    assert await client.wait_for_completion("q-v3", timeout=60) == (
        f"v3 code in pid {v3.pid}: pen costs 3"
    )


async def _started(*workers: Any) -> bool:
    return all(" started for app " in w.log() for w in workers)


async def _passed_over_by(*workers: Any, instance_id: str = "") -> None:
    async def both() -> bool:
        return all(f"passes over {instance_id}" in w.log() for w in workers)

    await eventually(both, timeout=30, message=f"both workers passed over {instance_id}")
