"""Local hand-off (``WorkerOptions.local_handoff``): a commit leases its new activities to the
committing worker and an ack locks its instance for the acking worker, so a chain runs on one
worker with two script calls per step (commit, ack) and no fetch, claim or wake-up between.
Against the real server and fakeredis; the counts come from ``RedisStore.calls``."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.base import (
    ClaimedInstance,
    OrchestrationLease,
    TurnCommit,
    WorkItemLease,
    WorkTake,
)
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


@app.orchestration
async def one_step(ctx: OrchestrationContext, x: int) -> int:
    return await ctx.call_activity(inc, x)


async def test_a_fetched_turn_claims_the_next_instance_in_its_commit(store: RedisStore) -> None:
    """Many instances started at once: each first turn's commit claims the next one for the
    same fetch loop, so claims of their own are the exception (single partition)."""
    n = 60
    client = Client(store, app)
    iids = [await client.start(one_step, i) for i in range(n)]
    worker = Worker(app, store, options(handoff=True))
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(30):
            assert [await client.wait_for_completion(i, timeout=30) for i in iids] == [
                i + 1 for i in range(n)
            ]
        worker.stop()
    calls = dict(store.calls)
    if store.partitions > 1:  # the round robin over partitions decides: nothing claimed
        assert "commit_turn:claimed" not in calls
        return
    # 4 fetch loops: each starts with a claim of its own, then its commits claim for it
    assert calls.get("commit_turn:claimed", 0) >= n - 8, calls
    assert calls.get("claim_orchestration", 0) - calls.get("claim_orchestration:empty", 0) <= 8


class StopAfterClaim(RedisStore):
    """The real store; the worker is stopped right after a commit claimed its next instance."""

    worker: Worker | None = None
    claimed: str | None = None

    async def commit_turn_and_claim(
        self,
        lease: OrchestrationLease,
        commit: TurnCommit,
        *,
        lock_ms: int,
        take: WorkTake | None = None,
    ) -> tuple[list[WorkItemLease], ClaimedInstance | None]:
        result = await super().commit_turn_and_claim(lease, commit, lock_ms=lock_ms, take=take)
        if result[1] is not None and self.worker is not None:
            self.claimed = result[1].instance_id
            self.worker.stop()
            self.worker = None
        return result


async def test_a_stopping_worker_hands_its_claim_back_at_once(store: RedisStore) -> None:
    if store.partitions > 1:
        pytest.skip("not applicable: a multi-partition store claims nothing in its commits")
    stopper = StopAfterClaim.__new__(StopAfterClaim)
    stopper.__dict__.update(store.__dict__)  # the same connections, namespace and scripts
    client = Client(store, app)
    iids = [await client.start(one_step, i) for i in range(3)]
    worker = Worker(app, stopper, replace(options(handoff=True), orchestration_concurrency=1))
    stopper.worker = worker
    with anyio.fail_after(20):
        await worker.run()
    # the claimed instance is not left locked until its lock expires (2 s): fetchable now,
    # with no attempt counted against it
    assert stopper.claimed in iids
    fetched = {}
    while (lease := await store.fetch_orchestration(lock_ms=2_000)) is not None:
        fetched[lease.instance_id] = lease.attempt
    assert fetched.get(stopper.claimed) == 1, (stopper.claimed, fetched)
