"""The session manager on its own, against a recording fake of the two store calls it makes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from durable_redis.runtime.cancel import CancelCause
from durable_redis.runtime.options import WorkerOptions
from durable_redis.runtime.sessions import SessionManager
from durable_redis.storage.base import LostSessions, SessionRef

pytestmark = pytest.mark.anyio


class FakeStore:
    def __init__(self) -> None:
        self.lost: set[SessionRef] = set()
        self.closed: set[SessionRef] = set()  # lost because the orchestration closed them
        self.renewed: list[list[SessionRef]] = []
        self.released: list[list[SessionRef]] = []

    async def renew_sessions(
        self, worker_id: str, sessions: Sequence[SessionRef], lock_ms: int
    ) -> LostSessions:
        self.renewed.append(list(sessions))
        return LostSessions(
            [s for s in sessions if s in self.lost | self.closed],
            [s for s in sessions if s in self.closed],
        )

    async def release_sessions(
        self, worker_id: str, sessions: Sequence[SessionRef], queues: Sequence[str] = ()
    ) -> None:
        self.released.append(list(sessions))


class FakeRun:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def cancel(self, cause: CancelCause, detail: str = "") -> None:
        self.reasons.append(cause.text(detail))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(**kwargs: object) -> tuple[SessionManager, FakeStore, Clock]:
    store = FakeStore()
    clock = Clock()
    manager = SessionManager(store, "w1", WorkerOptions(**kwargs), clock=clock)  # type: ignore[arg-type]
    return manager, store, clock


A = SessionRef("i1", "s1")
B = SessionRef("i1", "s2")


async def test_shared_entry_and_capacity() -> None:
    manager, _, _ = make(max_sessions_per_worker=2)
    r1, r2, r3 = FakeRun(), FakeRun(), FakeRun()
    e1 = manager.attach(A, r1)
    e2 = manager.attach(A, r2)
    assert e1 is e2
    assert manager.owned_count == 1 and manager.remaining_capacity == 1
    manager.attach(B, r3)
    assert manager.remaining_capacity == 0


async def test_lease_loss_cancels_in_flight_and_forgets_entry() -> None:
    manager, store, _ = make()
    r1, r2 = FakeRun(), FakeRun()
    entry = manager.attach(A, r1)
    manager.attach(A, r2)
    store.lost.add(A)
    await manager.tick()
    assert r1.reasons and r2.reasons
    assert manager.owned_count == 0
    # late detach of the stale entry does not resurrect it
    manager.detach(entry, r1)
    assert manager.get(A) is None
    # a later claim starts clean
    r3 = FakeRun()
    fresh = manager.attach(A, r3)
    assert fresh is not entry and fresh.active == {r3}
    assert manager.owned_count == 1


async def test_idle_timeout_starts_after_last_activity() -> None:
    manager, store, clock = make(session_idle_timeout=5.0)
    r1, r2 = FakeRun(), FakeRun()
    entry = manager.attach(A, r1)
    manager.attach(A, r2)
    manager.detach(entry, r1)
    clock.now += 10
    await manager.tick()
    assert manager.owned_count == 1  # r2 still running
    manager.detach(entry, r2)
    clock.now += 4
    await manager.tick()
    assert manager.owned_count == 1 and not store.released
    clock.now += 2
    await manager.tick()
    assert manager.owned_count == 0
    assert store.released == [[A]]
    assert manager.released_since(A, clock.now - 1)


async def test_no_idle_timeout_keeps_sessions() -> None:
    manager, store, clock = make()
    r1 = FakeRun()
    entry = manager.attach(A, r1)
    manager.detach(entry, r1)
    clock.now += 10_000
    await manager.tick()
    assert manager.owned_count == 1
    assert store.renewed[-1] == [A]


async def test_shutdown_releases_idle_then_all() -> None:
    manager, store, _ = make()
    r1, r2 = FakeRun(), FakeRun()
    ea = manager.attach(A, r1)
    manager.attach(B, r2)
    manager.detach(ea, r1)
    await manager.release_idle()
    assert store.released == [[A]]
    assert manager.owned() == [B]
    await manager.release_all()
    assert store.released[-1] == [B]
    assert r2.reasons  # in-flight work of a released session is told to stop
    assert manager.owned_count == 0


async def test_verify_asks_the_store() -> None:
    manager, store, _ = make()
    assert await manager.verify(A)
    store.lost.add(A)
    assert not await manager.verify(A)


async def test_a_closed_session_ends_without_a_lost_lease_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager, store, _ = make(max_sessions_per_worker=1)
    run = FakeRun()
    entry = manager.attach(A, run)
    manager.detach(entry, run)
    store.closed.add(A)
    with caplog.at_level("INFO", logger="durable_redis.runtime.sessions"):
        await manager.tick()
    assert manager.remaining_capacity == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("session ended") for m in messages), messages
    assert not any("lost" in m for m in messages), messages
