"""Held instances in-process (issue 16): the per-orchestration ``on_nondeterminism`` wins over
the worker's, and the options are validated. The real-process story is in
tests/e2e/test_e2e_deploy.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import anyio.abc
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.errors import ConfigurationError, RegistrationError
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.base import InstanceStatus
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def _deploy(swapped: bool, policy: str | None) -> App:
    app = App("held")

    @app.activity
    def first(ctx: ActivityContext) -> str:
        return "first"

    @app.activity
    def second(ctx: ActivityContext) -> str:
        return "second"

    @app.orchestration(name="flow", on_nondeterminism=policy)
    async def flow(ctx: OrchestrationContext) -> list[Any]:
        steps = (second, first) if swapped else (first, second)
        a = await ctx.call_activity(steps[0])
        go = await ctx.wait_for_event("go")
        return [a, go, await ctx.call_activity(steps[1])]

    return app


async def _waiting(store: RedisStore, options: WorkerOptions, iid: str) -> Client:
    client = Client(store, _deploy(False, None))
    await client.start("flow", instance_id=iid)
    v1 = Worker(_deploy(False, None), store, options)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(v1.run)
            while not any(
                type(e).__name__ == "ActivityCompleted" for e in await client.get_history(iid)
            ):
                await anyio.sleep(0.02)
            v1.stop(grace_period=0)
    return client


@pytest.mark.parametrize(
    ("orchestration", "worker", "held"),
    [(None, "hold", True), ("fail", "hold", False), ("hold", "fail", True), (None, "fail", False)],
)
async def test_the_orchestration_policy_wins_over_the_worker_one(
    store: RedisStore,
    task_group: anyio.abc.TaskGroup,
    fast_options: WorkerOptions,
    orchestration: str | None,
    worker: str,
    held: bool,
) -> None:
    options = dataclasses.replace(
        fast_options, on_nondeterminism=worker, held_backoff=0.1, held_backoff_max=0.2
    )
    client = await _waiting(store, options, "w")
    v2 = Worker(_deploy(True, orchestration), store, options)
    task_group.start_soon(v2.run)
    await client.raise_event("w", "go", 1)
    with anyio.fail_after(20):
        while True:
            state = await client.get_status("w")
            assert state is not None
            if state.held is not None or state.is_terminal:
                break
            await anyio.sleep(0.02)
    if held:
        assert state.status is InstanceStatus.RUNNING and "no longer matches" in (state.held or "")
    else:
        assert state.status is InstanceStatus.FAILED and state.held is None
        assert state.error is not None and state.error.kind == "nondeterminism"
    v2.stop()


def test_policies_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="on_nondeterminism"):
        WorkerOptions(on_nondeterminism="retry")
    with pytest.raises(ConfigurationError, match="held_backoff_max"):
        WorkerOptions(held_backoff=5, held_backoff_max=1)
    with pytest.raises(RegistrationError, match="on_nondeterminism"):
        App("x").orchestration(on_nondeterminism="ignore")
    assert WorkerOptions().held_delay_ms(1) == 1000
    assert WorkerOptions().held_delay_ms(3) == 4000
    assert WorkerOptions().held_delay_ms(30) == 60_000
