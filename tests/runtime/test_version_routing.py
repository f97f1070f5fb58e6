"""Version routing (issue 16): an instance runs only on the orchestration version it recorded
at its start; a worker without that version leaves it to the others (never failed, no attempt
consumed), a worker with it takes it. The real-process story is in
tests/e2e/test_e2e_versions.py."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import anyio
import anyio.abc
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.core import messages as msg
from durable_redis.core.turn import run_turn
from durable_redis.errors import NotRegisteredError
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.base import InstanceStatus
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def _deploy(*versions: str) -> App:
    app = App("versions")

    @app.activity
    def where(ctx: ActivityContext, tag: str) -> str:
        return f"{tag} code"  # any worker runs activities: the tag says whose code called it

    def greet_of(version: str) -> Any:
        async def greet(ctx: OrchestrationContext) -> str:
            return str(await ctx.call_activity(where, f"v{version or '0'}"))

        return greet

    for version in versions:
        app.orchestration(name="greet", version=version)(greet_of(version))
    return app


def test_a_recorded_version_is_looked_up_exactly() -> None:
    old, new = _deploy(""), _deploy("2")
    start = msg.StartOrchestration(name="greet", input=b"\xc0", version="")
    first = run_turn(old, "g", [], [start], now_ms=1)
    assert first.new_events[0].version == ""  # type: ignore[union-attr]
    with pytest.raises(NotRegisteredError, match="no version ''"):
        run_turn(new, "g", list(first.new_events), [], now_ms=2)  # v2 code never runs it
    assert run_turn(old, "g", list(first.new_events), [], now_ms=2) is not None
    # a start that asks for no version takes the worker's latest, and records it
    started = run_turn(_deploy("1", "2"), "h", [], [start], now_ms=1)
    assert started.new_events[0].version == "2"  # type: ignore[union-attr]


async def test_each_instance_runs_on_the_worker_that_has_its_version(
    store: RedisStore,
    task_group: anyio.abc.TaskGroup,
    fast_options: WorkerOptions,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="durable_redis.runtime.orchestrations")
    options = dataclasses.replace(fast_options, max_attempts=2, orchestration_concurrency=1)
    v1 = Worker(_deploy("1"), store, dataclasses.replace(options, worker_id="w-v1"))
    v2 = Worker(_deploy("2"), store, dataclasses.replace(options, worker_id="w-v2"))
    client = Client(store)  # no app: the workers decide
    ids = [(f"g{i}", "1" if i % 2 else "2") for i in range(12)]
    for iid, version in ids:
        await client.start("greet", instance_id=iid, version=version)
    task_group.start_soon(v1.run)
    task_group.start_soon(v2.run)
    with anyio.fail_after(30):
        for iid, version in ids:
            result = await client.wait_for_completion(iid, timeout=30)
            assert result == f"v{version} code", (iid, result)
    v3 = await client.start("greet", instance_id="g-v3", version="3")  # nobody has it

    def passed_over_by() -> set[str]:
        return {
            getattr(r, "worker_id", "")
            for r in caplog.records
            if "this one passes over g-v3" in r.getMessage()
        }

    with anyio.fail_after(20):
        while passed_over_by() != {"w-v1", "w-v2"}:
            await anyio.sleep(0.05)
    state = await client.get_status(v3)
    assert state is not None and state.status is InstanceStatus.PENDING and state.error is None
    w3 = Worker(_deploy("3"), store, dataclasses.replace(options, worker_id="w-v3"))
    task_group.start_soon(w3.run)
    assert await client.wait_for_completion(v3, timeout=30) == "v3 code"
