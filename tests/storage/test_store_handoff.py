"""Local hand-off: a commit that leases its new work items to the committing worker
(``commit_turn(..., take=WorkTake)``) and an ack that locks its instance for the acking worker
(``ack_work_item(..., lock_ms=...)``). Both must hand out exactly what a fetch would: fenced
leases, FIFO among plain items, nothing twice, nobody else woken for it."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio
import pytest

from durable_redis.errors import LeaseLostError
from durable_redis.storage import RedisStore
from durable_redis.storage.base import WorkTake
from tests.storage.store_support import LOCK, SHORT, fetch, start, turn, work

pytestmark = pytest.mark.anyio
_T = TypeVar("_T")


async def test_commit_takes_its_new_plain_items_up_to_the_limit(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    items = [work(f"1:{i}") for i in range(4)] + [work("1:9", session="s")]
    taken = await store.commit_turn(
        lease,
        turn(lease, work_items=items, sessions_opened=["s"]),
        take=WorkTake("w1", limit=2, lock_ms=LOCK),
    )
    assert [t.activity_key for t in taken] == ["1:0", "1:1"]
    assert all(t.attempt == 1 and t.instance_id == "a" and t.session_id is None for t in taken)
    assert taken[0].data == b"task-1:0"
    # the rest is queued as usual (the session item stays session work); the taken are leased
    rest = await store.fetch_work_items("w2", limit=10, lock_ms=LOCK)
    assert [t.activity_key for t in rest] == ["1:2", "1:3"]
    assert (await store.queue_depths()).extra["leased_work_items"] == 4
    await store.ack_work_item(taken[0], "done-0", b"r")  # a taken lease acks like a fetched one


async def test_commit_takes_nothing_while_an_older_plain_item_waits(store: RedisStore) -> None:
    await start(store, "old")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, work_items=[work("1:1")]))
    await start(store, "new")
    lease = await fetch(store)
    taken = await store.commit_turn(
        lease, turn(lease, work_items=[work("1:1")]), take=WorkTake("w", limit=8, lock_ms=LOCK)
    )
    assert taken == []
    got = await store.fetch_work_items("w", limit=10, lock_ms=LOCK)
    assert [t.instance_id for t in got] == ["old", "new"]  # FIFO


async def resend_last(store: RedisStore, script: str, call: Awaitable[_T]) -> tuple[_T, Any]:
    """Await ``call``, then send its last ``script`` call again, as redis-py's retry does after
    a lost reply; returns the call's result and the raw reply of the re-sent script."""
    sent: list[tuple[Any, Any]] = []
    real_eval = store._eval

    async def recording(name: str, keys: Any, args: Any) -> list[Any]:
        if name == script:
            sent.append((keys, args))
        return await real_eval(name, keys, args)

    store._eval = recording  # type: ignore[method-assign]
    try:
        result = await call
    finally:
        store._eval = real_eval  # type: ignore[method-assign]
    return result, await real_eval(script, *sent[-1])


async def test_a_resent_commit_hands_back_what_it_took(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    # the same call sent again (a client retry after a lost reply): nothing written, same lease
    [first], again = await resend_last(
        store,
        "commit_turn",
        store.commit_turn(
            lease, turn(lease, work_items=[work("1:1")]), take=WorkTake("w", 8, LOCK)
        ),
    )
    assert again[0] == 0 and [x.decode() if isinstance(x, bytes) else x for x in again[3][:2]] == [
        first.item_id,
        first.token,
    ]
    await store.ack_work_item(first, "done", b"r")  # that lease is the live one


async def test_commit_without_take_returns_nothing(store: RedisStore) -> None:
    await start(store, "b")
    lease = await fetch(store)
    assert await store.commit_turn(lease, turn(lease, work_items=[work("1:1")])) == []
    [queued] = await store.fetch_work_items("w", limit=10, lock_ms=LOCK)
    assert queued.instance_id == "b"


async def test_a_repeated_ack_hands_back_the_lock_it_took(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, work_items=[work("1:1")]))
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    locked, again = await resend_last(
        store, "ack_work_item", store.ack_work_item(item, "done", b"r", lock_ms=LOCK)
    )
    assert locked is not None
    assert again[0] == 0 and again[1].decode() == locked.token
    assert [m[0] for m in [again[4][i : i + 3] for i in range(0, len(again[4]), 3)]] == [b"done"]
    await store.commit_turn(locked, turn(locked))  # the lock is still the one we hold


async def test_taken_item_lease_expires_and_is_redelivered(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    [taken] = await store.commit_turn(
        lease, turn(lease, work_items=[work("1:1")]), take=WorkTake("w1", limit=1, lock_ms=SHORT)
    )
    assert await store.fetch_work_items("w2", limit=1, lock_ms=LOCK) == []  # leased
    await anyio.sleep(SHORT / 1000 + 0.05)
    [again] = await store.fetch_work_items("w2", limit=1, lock_ms=LOCK)
    assert again.item_id == taken.item_id and again.attempt == 2
    with pytest.raises(LeaseLostError):
        await store.ack_work_item(taken, "done", b"r")


async def test_ack_locks_an_unlocked_instance_for_the_acker(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, events=[b"e1"], work_items=[work("1:1")]))
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    locked = await store.ack_work_item(item, "done-1", b"result", lock_ms=LOCK)
    assert locked is not None and locked.instance_id == "a"
    assert [(m.message_id, m.data, m.attempt) for m in locked.messages] == [
        ("done-1", b"result", 1)
    ]
    assert list(locked.history) == [b"e1"] and locked.execution_id == 1
    assert await store.fetch_orchestration(lock_ms=LOCK) is None  # ours, nobody else's
    await store.commit_turn(locked, turn(locked, events=[b"e2"]))
    assert await store.fetch_orchestration(lock_ms=LOCK) is None  # the message was consumed
    assert await store.read_history("a") == [b"e1", b"e2"]


async def test_ack_locks_only_the_last_outstanding_item_of_an_instance(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    items = [work("1:1"), work("1:2")]
    await store.commit_turn(lease, turn(lease, work_items=items))
    one, two = await store.fetch_work_items("w", limit=2, lock_ms=LOCK)
    # another item of the instance is still out: its completions should gather in one turn
    assert await store.ack_work_item(one, "done-1", b"r1", lock_ms=LOCK) is None
    locked = await store.ack_work_item(two, "done-2", b"r2", lock_ms=LOCK)
    assert locked is not None
    assert [m.message_id for m in locked.messages] == ["done-1", "done-2"]


async def test_ack_does_not_lock_an_instance_locked_by_another(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, work_items=[work("1:1")]))
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    await store.enqueue_message("a", "event", b"e")
    other = await fetch(store)  # another worker runs a turn for the event meanwhile
    assert await store.ack_work_item(item, "done-1", b"r1", lock_ms=LOCK) is None
    await store.commit_turn(other, turn(other))
    after = await fetch(store)  # the completion is claimable by anyone now
    assert [m.message_id for m in after.messages] == ["done-1"]


async def test_ack_lock_expires_and_the_instance_is_refetched(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, work_items=[work("1:1")]))
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    locked = await store.ack_work_item(item, "done", b"r", lock_ms=SHORT)
    assert locked is not None
    await anyio.sleep(SHORT / 1000 + 0.05)
    again = await fetch(store)
    assert again.instance_id == "a" and [m.attempt for m in again.messages] == [2]
    with pytest.raises(LeaseLostError):
        await store.commit_turn(locked, turn(locked))
