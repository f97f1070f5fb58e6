"""The held marker of an instance (issue 16): set by a held abandon, kept across abandons,
cleared by the next committed turn; ``request_fail_held`` marks only a held instance."""

from __future__ import annotations

import pytest
from store_support import fetch, start, turn

from durable_redis.storage import RedisStore

pytestmark = pytest.mark.anyio


async def test_a_held_abandon_marks_the_instance_and_a_commit_clears_it(
    store: RedisStore,
) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease))
    await store.enqueue_message("a", "m", b"x")
    lease = await fetch(store)
    assert await store.request_fail_held("a") is False  # not held: nothing marked
    await store.abandon_orchestration(lease, count_attempt=False, held="recorded A, now B")
    info = await store.get_instance("a")
    assert info is not None and info.held == "recorded A, now B"
    assert info.held_at_ms is not None and not info.fail_requested
    first_held_at = info.held_at_ms

    lease = await fetch(store)  # the message is still queued: the turn is retried
    assert [m.message_id for m in lease.messages] == ["m"]
    assert lease.messages[0].attempt == 1  # held turns are not counted
    await store.abandon_orchestration(lease, count_attempt=False, held="recorded A, now C")
    info = await store.get_instance("a")
    assert info is not None and info.held == "recorded A, now C"
    assert info.held_at_ms == first_held_at  # held since the first time

    assert await store.request_fail_held("a") is True
    info = await store.get_instance("a")
    assert info is not None and info.fail_requested

    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease))
    info = await store.get_instance("a")
    assert info is not None and info.held is None and info.held_at_ms is None
    assert not info.fail_requested


async def test_a_plain_abandon_leaves_no_marker(store: RedisStore) -> None:
    await start(store, "b")
    lease = await fetch(store)
    await store.abandon_orchestration(lease, count_attempt=False)
    info = await store.get_instance("b")
    assert info is not None and info.held is None


async def test_crashes_count_deliveries_that_ended_without_commit_or_hand_back(
    store: RedisStore,
) -> None:
    """The turn watchdog's crash count: a lease that expired (its worker died) counts, an
    abandon (counted or not) does not, a commit clears it with the messages."""
    import anyio

    await start(store, "c")
    lease = await fetch(store, lock_ms=100)
    assert lease.crashes == 0
    await anyio.sleep(0.2)  # the worker "died": its lease expires, nothing handed back
    lease = await fetch(store, lock_ms=100)
    assert (lease.attempt, lease.crashes) == (2, 1)
    await store.abandon_orchestration(lease, count_attempt=True)  # a code crash: it lived
    lease = await fetch(store)
    assert (lease.attempt, lease.crashes) == (3, 1)
    await store.abandon_orchestration(lease, count_attempt=False)  # a hold
    lease = await fetch(store, lock_ms=100)
    assert (lease.attempt, lease.crashes) == (3, 1)
    await anyio.sleep(0.2)
    lease = await fetch(store)
    assert (lease.attempt, lease.crashes) == (4, 2)
    await store.commit_turn(lease, turn(lease))
    await store.enqueue_message("c", "m2", b"x")
    lease = await fetch(store)
    assert (lease.attempt, lease.crashes) == (1, 0)
