"""Activity queue: queue semantics and FIFO, lock expiry and renewal, attempt counts, and
cancellation by lock stealing (duroxide validation groups, ported)."""

from __future__ import annotations

import anyio
import pytest

from durable_redis.errors import LeaseLostError
from durable_redis.storage import NewWorkItem, RedisStore
from tests.storage.store_support import LOCK, SHORT, fetch, schedule, start, turn, work

pytestmark = pytest.mark.anyio


async def test_work_items_fifo_and_batch(store: RedisStore) -> None:
    await schedule(store, "a", [work(f"1:{i}") for i in range(5)])
    first = await store.fetch_work_items("w", limit=2, lock_ms=LOCK)
    rest = await store.fetch_work_items("w", limit=32, lock_ms=LOCK)
    assert [i.activity_key for i in first + rest] == [f"1:{i}" for i in range(5)]
    assert all(i.attempt == 1 and i.instance_id == "a" for i in first + rest)
    assert first[0].data == b"task-1:0"


async def test_peek_lock_and_ack_enqueues_completion_atomically(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1")])
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    assert await store.fetch_work_items("w", limit=1, lock_ms=LOCK) == []  # invisible while leased
    assert (await store.queue_depths()).extra["leased_work_items"] == 1
    await store.ack_work_item(item, "done-1:1", b"result")
    depths = await store.queue_depths()
    assert depths.extra["leased_work_items"] == 0 and depths.work_items == 0
    lease = await fetch(store)
    assert [(m.message_id, m.data) for m in lease.messages] == [("done-1:1", b"result")]


async def test_ack_twice_is_safe(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1")])
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    await store.ack_work_item(item, "done", b"r")
    await store.ack_work_item(item, "done", b"r")  # a retry after a lost reply: no error, no dup
    lease = await fetch(store)
    assert [m.message_id for m in lease.messages] == ["done"]


async def test_lease_expiry_redelivers_with_attempt_two(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1")])
    [first] = await store.fetch_work_items("w1", limit=1, lock_ms=SHORT)
    await anyio.sleep(SHORT / 1000 + 0.05)
    with pytest.raises(LeaseLostError):  # expired, even though nobody re-fetched yet
        await store.ack_work_item(first, "done", b"r")
    [second] = await store.fetch_work_items("w2", limit=1, lock_ms=LOCK)
    assert second.item_id == first.item_id and second.attempt == 2
    assert second.token != first.token
    with pytest.raises(LeaseLostError):
        await store.ack_work_item(first, "done", b"r")
    await store.ack_work_item(second, "done", b"r")


async def test_renewal(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1"), work("1:2")])
    items = await store.fetch_work_items("w", limit=2, lock_ms=200)
    await anyio.sleep(0.1)
    assert await store.renew_work_items(items[:1], 500) == []
    await anyio.sleep(0.15)  # past the original deadline: the renewed one is still ours
    assert await store.renew_work_items(items, 500) == [items[1].item_id]
    redelivered = await store.fetch_work_items("w2", limit=5, lock_ms=LOCK)
    assert [i.item_id for i in redelivered] == [items[1].item_id]
    await store.ack_work_item(items[0], "d", b"r")
    assert await store.renew_work_items(items[:1], 500) == [items[0].item_id]  # after ack


async def test_abandon_releases_and_delays(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1")])
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    await store.abandon_work_item(item)
    [again] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    assert again.token != item.token and again.attempt == 2
    with pytest.raises(LeaseLostError):
        await store.abandon_work_item(item)
    await store.abandon_work_item(again, delay_ms=200, count_attempt=False)
    assert await store.fetch_work_items("w", limit=1, lock_ms=LOCK) == []
    await anyio.sleep(0.25)
    [later] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    assert later.attempt == 2


async def test_delayed_work_item(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    due = await store.server_time_ms() + 150
    await store.commit_turn(
        lease, turn(lease, work_items=[NewWorkItem("1:1", b"t", visible_at_ms=due), work("1:2")])
    )
    got = await store.fetch_work_items("w", limit=5, lock_ms=LOCK)
    assert [i.activity_key for i in got] == ["1:2"]
    await anyio.sleep(0.2)
    assert [i.activity_key for i in await store.fetch_work_items("w", limit=5, lock_ms=LOCK)] == [
        "1:1"
    ]


# -- cancellation by lock stealing -------------------------------------------------------------


async def test_cancelled_work_is_deleted_and_its_lease_stolen(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1"), work("1:2"), work("1:3")])
    [inflight] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    await store.enqueue_message("a", "tick", b"x")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, cancelled_work=["1:1", "1:2", "9:9"]))
    assert await store.renew_work_items([inflight], LOCK) == [inflight.item_id]
    with pytest.raises(LeaseLostError):
        await store.ack_work_item(inflight, "done", b"late")
    left = await store.fetch_work_items("w", limit=5, lock_ms=LOCK)
    assert [i.activity_key for i in left] == ["1:3"]


async def test_schedule_and_cancel_in_one_commit_is_absent(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(
        lease, turn(lease, work_items=[work("1:1"), work("1:2")], cancelled_work=["1:1"])
    )
    got = await store.fetch_work_items("w", limit=5, lock_ms=LOCK)
    assert [i.activity_key for i in got] == ["1:2"]


async def test_work_for_deleted_instance_acks_harmlessly(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1")])
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    await store.delete_instance("a", force=True)
    with pytest.raises(LeaseLostError):  # its work went with it
        await store.ack_work_item(item, "done", b"r")
    assert await store.get_instance("a") is None
    assert await store.fetch_orchestration(lock_ms=LOCK) is None


async def test_stale_activity_after_delete_and_recreate(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1")])
    [old] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    await store.delete_instance("a", force=True)
    await schedule(store, "a", [work("1:1")])
    with pytest.raises(LeaseLostError):
        await store.ack_work_item(old, "done-old", b"r")
    [new] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    await store.ack_work_item(new, "done-new", b"r")
    assert [m.message_id for m in (await fetch(store)).messages] == ["done-new"]
