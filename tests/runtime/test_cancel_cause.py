"""An in-flight activity or job is stopped for a ``CancelCause`` (an enum, not a reason string
read back by its prefix): the cause alone decides whether the item is handed back."""

from __future__ import annotations

import pytest

from durable_redis.runtime import activities, jobs
from durable_redis.runtime.cancel import CancelCause
from durable_redis.storage.base import WorkItemLease
from durable_redis.storage.job_types import JobLease

pytestmark = pytest.mark.anyio

HANDED_BACK = {
    CancelCause.SESSION_CLOSED,
    CancelCause.SESSION_LEASE_LOST,
    CancelCause.SESSION_RELEASED,
    CancelCause.SHUTDOWN,
}


def _activity_run() -> activities._Run:
    return activities._Run(WorkItemLease("i\n1:2", "t", "i", "1:2", None, b"", 1, 0))


def _job_run() -> jobs._Run:
    return jobs._Run(JobLease("j", "t", "add", b"", 1, 1, 0))


@pytest.mark.parametrize("cause", list(CancelCause))
async def test_the_cause_decides_the_hand_back(cause: CancelCause) -> None:
    for run in (_activity_run(), _job_run()):
        run.cancel(cause, "moved")
        assert run.hand_back is (cause in HANDED_BACK)
        assert run.cancel_reason == f"{cause.value}: moved"
        assert run.cancel_event.is_set()


async def test_the_first_cause_is_the_one_logged() -> None:
    run = _activity_run()
    run.cancel(CancelCause.ACTIVITY_LEASE_LOST)
    run.cancel(CancelCause.SHUTDOWN)
    assert run.cancel_reason == "activity lease lost"
    assert run.hand_back  # a shutdown after a lost lease still hands the item back
