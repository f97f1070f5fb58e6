"""Local hand-off (``WorkerOptions.local_handoff``): a commit leases its new activities to the
committing worker and an ack locks its instance for the acking worker, so a chain runs on one
worker with two script calls per step (commit, ack) and no fetch, claim or wake-up between.
Against the real server and fakeredis; the counts come from ``RedisStore.calls``."""

from __future__ import annotations

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

app = App("handoff")
STEPS = 20


@app.activity
def inc(ctx: ActivityContext, x: int) -> int:
    return x + 1


@app.orchestration
async def chain(ctx: OrchestrationContext, n: int) -> int:
    x = 0
    for _ in range(n):
        x = await ctx.call_activity(inc, x)
    return x


def options(handoff: bool) -> WorkerOptions:
    return WorkerOptions(
        lock_timeout=2.0,
        renewal_interval=0.5,
        fetch_wait=0.2,
        shutdown_grace_period=1.0,
        janitor_interval=None,
        local_handoff=handoff,
    )


async def run_chain(store: RedisStore, handoff: bool) -> dict[str, int]:
    worker = Worker(app, store, options(handoff))
    client = Client(store, app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        iid = await client.start(chain, STEPS)
        with anyio.fail_after(30):
            assert await client.wait_for_completion(iid, timeout=30) == STEPS
        worker.stop()
    return dict(store.calls)


async def test_chain_steps_cost_a_commit_and_an_ack_each(store: RedisStore) -> None:
    calls = await run_chain(store, handoff=True)
    assert calls.get("commit_turn:taken") == STEPS
    assert calls.get("ack_work_item:locked") == STEPS
    assert calls.get("commit_turn") == STEPS + 1
    # only the start message goes through claim + lock; no activity was fetched
    fetched = calls.get("fetch_work_items", 0) - calls.get("fetch_work_items:empty", 0)
    assert fetched == 0
    assert calls.get("lock_messages", 0) == 1


async def test_without_handoff_every_step_is_fetched(store: RedisStore) -> None:
    calls = await run_chain(store, handoff=False)
    assert "commit_turn:taken" not in calls and "ack_work_item:locked" not in calls
    assert calls.get("lock_messages", 0) == STEPS + 1
