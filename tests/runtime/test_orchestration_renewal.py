"""One renewal loop renews every lease the orchestration turns of a worker hold: a turn that
outlives the renewal interval is renewed in time, a lost lease sets its turn's ``lost`` event,
and a lease whose turn ended is left alone. A scripted store counts the renewals."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from durable_redis.errors import LeaseLostError
from durable_redis.runtime import WorkerOptions
from durable_redis.runtime.orchestrations import OrchestrationDispatcher, _Held
from durable_redis.storage.base import OrchestrationLease

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

INTERVAL = 0.1


class RenewingStore:
    def __init__(self, lost: set[str]) -> None:
        self.lost = lost
        self.renewed: list[tuple[str, float]] = []

    async def renew_orchestration(self, lease: OrchestrationLease, lock_ms: int) -> int:
        self.renewed.append((lease.token, anyio.current_time()))
        if lease.token in self.lost:
            raise LeaseLostError("renew_orchestration: lease lost")
        return 0


def lease(token: str) -> OrchestrationLease:
    return OrchestrationLease(
        instance_id=f"i-{token}",
        token=token,
        lease_until_ms=0,
        fetched_at_ms=0,
        execution_id=1,
        history=[],
        messages=[],
        attempt=1,
        instance=None,
    )


async def test_one_loop_renews_held_leases_in_time_and_reports_lost_ones() -> None:
    store = RenewingStore(lost={"b"})
    options = WorkerOptions(lock_timeout=1.0, renewal_interval=INTERVAL, janitor_interval=None)
    dispatcher = OrchestrationDispatcher(None, store, options, "w", None)  # type: ignore[arg-type]
    held: Any = dispatcher._held
    start = anyio.current_time()
    held["a"] = _Held(lease("a"), start)
    held["b"] = _Held(lease("b"), start)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.renewal_loop)
        with anyio.fail_after(5):
            await held["b"].lost.wait()
        await anyio.sleep(4 * INTERVAL)
        del held["a"]  # the turn ended
        ended = anyio.current_time()
        await anyio.sleep(3 * INTERVAL)
        tg.cancel_scope.cancel()
    times = [t for token, t in store.renewed if token == "a"]
    assert len(times) >= 3
    gaps = [b - a for a, b in zip([start, *times], times, strict=False)]
    assert max(gaps) <= INTERVAL * 1.5 + 0.05  # never later than the interval (plus slack)
    assert all(t <= ended for t in times)  # nothing renewed after its turn ended
    assert [token for token, _ in store.renewed].count("b") == 1  # lost: not retried
