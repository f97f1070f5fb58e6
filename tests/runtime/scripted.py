"""A scripted store's fetch and work item leases, for dispatcher tests without Redis."""

from __future__ import annotations

from typing import Any

import anyio

from durable_redis.core import encode_task
from durable_redis.core.messages import ActivityTask
from durable_redis.storage.base import WorkItemLease


def work_item_lease(item_id: str, activity: str, attempt: int = 1) -> WorkItemLease:
    """A lease of one call of ``activity`` (no input, no session), as a fetch returns it."""
    task = ActivityTask(
        instance_id=f"i-{item_id}", execution_id=1, activity_id=1, name=activity, input=b""
    )
    return WorkItemLease(
        item_id=item_id,
        token="t",
        instance_id=task.instance_id,
        activity_key=task.activity_key,
        session_id=None,
        data=encode_task(task),
        attempt=attempt,
        lease_until_ms=0,
    )


class OneBatchFetch:
    """A store's ``fetch_work_items`` that hands out one batch, then nothing."""

    def __init__(self, batch: list[WorkItemLease]) -> None:
        self.batches = [batch]

    async def fetch_work_items(self, worker_id: str, **_: Any) -> list[WorkItemLease]:
        if self.batches:
            return self.batches.pop(0)
        await anyio.sleep(0.01)
        return []


async def wait_for_acks(acked: list[str], count: int = 1) -> None:
    """Until ``count`` items are acked (10 s at most)."""
    with anyio.fail_after(10):
        while len(acked) < count:
            await anyio.sleep(0.01)
