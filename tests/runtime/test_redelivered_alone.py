"""A twice-redelivered activity runs alone on its worker, and the other redelivered items of its
batch are back in the store, uncounted, before it starts; first redeliveries run together.

The suspect may be a poison item that kills the worker the moment it runs. Anything this worker
still holds then (a hand-back in flight included) has its lease expire as this worker's, and the
expiry counts a delivery: innocents fetched in one batch with a poison item would reach
``max_attempts`` beside it (tests/reliability/test_poison.py failed 3 of 4 looped runs so).
The dispatcher runs against a scripted store whose hand-backs take a round trip.
"""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest

from durable_redis.core import ActivityContext, App
from durable_redis.runtime import WorkerOptions, _bridge
from durable_redis.runtime.activities import ActivityDispatcher, runs_alone
from durable_redis.runtime.sessions import SessionManager
from durable_redis.storage.base import Store, WorkItemLease
from tests.runtime.scripted import OneBatchFetch, wait_for_acks, work_item_lease

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

app = App("alone")
MAX_ATTEMPTS = 3


class ScriptedStore(OneBatchFetch):
    """Hands out one batch, then nothing; abandons take a (simulated) round trip."""

    def __init__(self, batch: list[WorkItemLease]) -> None:
        super().__init__(batch)
        self.abandoned: list[tuple[str, bool]] = []
        self.acked: list[str] = []
        self.seen_by_suspect: list[list[tuple[str, bool]]] = []

    async def abandon_work_item(
        self, lease: WorkItemLease, *, delay_ms: int = 0, count_attempt: bool = True
    ) -> None:
        await anyio.sleep(0.05)
        self.abandoned.append((lease.item_id, count_attempt))

    async def ack_work_item(
        self, lease: WorkItemLease, message_id: str, data: bytes, **_: Any
    ) -> None:
        self.acked.append(lease.item_id)

    async def renew_work_items(self, *_: Any) -> list[str]:
        return []


STORE: ScriptedStore | None = None


@app.activity
async def suspect(ctx: ActivityContext) -> None:
    """Where a poison item would kill the worker: note what the store has back by then."""
    assert STORE is not None
    STORE.seen_by_suspect.append(list(STORE.abandoned))


def lease(item_id: str, attempt: int = 1) -> WorkItemLease:
    return work_item_lease(item_id, "suspect", attempt)


async def test_other_redelivered_items_are_back_before_the_suspect_runs() -> None:
    global STORE
    # The first twice-redelivered item runs alone; the other three are handed back.
    store = STORE = ScriptedStore([lease(f"w{i}", 3) for i in range(4)])
    options = WorkerOptions(max_attempts=MAX_ATTEMPTS, activity_concurrency=8, fetch_wait=0.01)
    as_store = cast(Store, store)
    sessions = SessionManager(as_store, "w", options)
    dispatcher = ActivityDispatcher(
        app, as_store, options, "w", sessions, _bridge.default_codec(app)
    )
    stopping = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.fetch_loop, stopping, tg)
        await wait_for_acks(store.acked)
        stopping.set()
        tg.cancel_scope.cancel()
    assert store.acked == ["w0"]
    handed_back = [("w1", False), ("w2", False), ("w3", False)]
    assert store.seen_by_suspect == [handed_back]
    assert store.abandoned == handed_back


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "alone"),
    [
        (1, 10, False),
        (2, 10, False),
        (3, 10, True),
        (10, 10, True),
        (11, 10, False),
        (2, 2, True),
        (2, 3, False),
        (3, 3, True),
    ],
)
def test_runs_alone_from_the_second_redelivery_or_on_the_last(
    attempt: int, max_attempts: int, alone: bool
) -> None:
    assert runs_alone(attempt, max_attempts) is alone


async def test_first_redeliveries_run_together() -> None:
    """A dead worker's items (its sessions' above all) come back in parallel, not one by one."""
    global STORE
    store = STORE = ScriptedStore([lease(f"w{i}", 2) for i in range(4)])
    options = WorkerOptions(max_attempts=10, activity_concurrency=8, fetch_wait=0.01)
    as_store = cast(Store, store)
    sessions = SessionManager(as_store, "w", options)
    dispatcher = ActivityDispatcher(
        app, as_store, options, "w", sessions, _bridge.default_codec(app)
    )
    stopping = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.fetch_loop, stopping, tg)
        await wait_for_acks(store.acked, 4)
        stopping.set()
        tg.cancel_scope.cancel()
    assert sorted(store.acked) == ["w0", "w1", "w2", "w3"]
    assert store.abandoned == []  # nothing handed back, nothing waited for another
