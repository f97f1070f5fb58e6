"""A lease renewal that races an item's ack reports no lost lease.

The ack removes the item from the store. A renewal of the same item that Redis runs after the
ack finds it gone and returns it as lost; the worker used to log "activity lease lost" and
cancel a run that had already finished (tests/reliability/test_clock_skew.py counted 4 such lines
on a healthy worker under load). An item whose ack is in flight is now left to the ack, which
reports a real loss itself ("late completion dropped"). The dispatcher runs against a scripted
store whose ack waits until the test lets it go.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import anyio
import pytest

from durable_redis.core import ActivityContext, App
from durable_redis.runtime import WorkerOptions, _bridge
from durable_redis.runtime.activities import ActivityDispatcher
from durable_redis.runtime.sessions import SessionManager
from durable_redis.storage.base import Store, WorkItemLease
from tests.runtime.scripted import OneBatchFetch, wait_for_acks, work_item_lease

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

app = App("renew-ack")


@app.activity
async def quick(ctx: ActivityContext) -> int:
    return 1


class AckInFlightStore(OneBatchFetch):
    """Hands out one item; its ack blocks on ``release``; a renewal finds every item gone."""

    def __init__(self, item: WorkItemLease) -> None:
        super().__init__([item])
        self.ack_started = anyio.Event()
        self.release = anyio.Event()
        self.acked: list[str] = []
        self.renewed: list[list[str]] = []

    async def ack_work_item(
        self, lease: WorkItemLease, message_id: str, data: bytes, **_: Any
    ) -> None:
        self.ack_started.set()
        await self.release.wait()
        self.acked.append(lease.item_id)

    async def renew_work_items(self, leases: list[WorkItemLease], *_: Any) -> list[str]:
        ids = [x.item_id for x in leases]
        self.renewed.append(ids)
        return ids  # as Redis answers once the ack has removed them


async def test_a_renewal_while_the_ack_is_in_flight_loses_no_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = AckInFlightStore(work_item_lease("w0", "quick"))
    options = WorkerOptions(activity_concurrency=4, fetch_wait=0.01)
    as_store = cast(Store, store)
    sessions = SessionManager(as_store, "w", options)
    dispatcher = ActivityDispatcher(
        app, as_store, options, "w", sessions, _bridge.default_codec(app)
    )
    stopping = anyio.Event()
    caplog.set_level(logging.INFO, logger="durable_redis")
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.fetch_loop, stopping, tg)
        with anyio.fail_after(10):
            await store.ack_started.wait()
        await dispatcher.renew_once()  # the item is still running here, its ack in flight
        store.release.set()
        await wait_for_acks(store.acked)
        stopping.set()
        tg.cancel_scope.cancel()
    assert store.acked == ["w0"]
    assert store.renewed == []  # nothing else was running: the renewal asked for nothing
    lost = [r.getMessage() for r in caplog.records if "lease lost" in r.getMessage()]
    assert lost == []
