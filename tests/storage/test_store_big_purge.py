"""Bounded purge: a terminal commit of an instance with more than PURGE_BATCH work items leaves a
tombstone instead of deleting them in its own script; nothing under it is ever leased again, the
acks and renewals of its leases are refused, and purge_work deletes it in short batches
(lua/includes/common.lua "Bounded purge"; the fault test is tests/reliability/test_big_purge.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from store_support import LOCK, fetch, schedule, turn, work

from durable_redis.errors import LeaseLostError
from durable_redis.storage import InstanceStatus, RedisStore
from durable_redis.storage.activities import PURGE_BATCH

pytestmark = pytest.mark.anyio
S = 5_000  # session lease, ms


async def instance_fields(store: RedisStore, iid: str) -> list[bytes]:
    pk = store._pk(iid)
    return [k for k in await store._redis.hkeys(pk.wq_items) if k.startswith(iid.encode() + b"\n")]


async def tombstone(store: RedisStore, iid: str) -> list[bytes]:
    pk = store._pk(iid)
    return [k for k in await store._redis.hkeys(pk.sess) if k.startswith(b"\n") or b"\n|" in k]


async def test_a_big_terminal_purge_fences_everything_then_deletes_in_batches(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = PURGE_BATCH + 150
    keys = [f"1:{k}" for k in range(1, n + 1)]
    # plain, session, and routed work with priorities (|n folds the priority into the seq)
    items = [work(k, session="s" if i % 3 == 1 else None) for i, k in enumerate(keys)]
    for i in range(2, len(items), 3):
        items[i] = dataclasses.replace(items[i], queue="gpu", priority=7 if i % 2 else -3)
    await schedule(store, "a", items, ["s"])
    await schedule(store, "b", [work("1:1", session="s"), work("1:2")], ["s"])
    held = await store.fetch_work_items("A", limit=6, lock_ms=LOCK, session_lock_ms=S)
    assert {i.instance_id for i in held} == {"a"}
    # the commit's own purge call is held back: the tombstone alone must fence the items
    later: list[str] = []

    async def deferred(instance_id: str, **_: Any) -> int:
        later.append(instance_id)
        return 0

    monkeypatch.setattr(store, "purge_work", deferred)
    await store.enqueue_message("a", "cancel", b"c")
    lease = await fetch(store)
    assert lease.instance_id == "a"
    await store.commit_turn(
        lease, turn(lease, status=InstanceStatus.CANCELLED, cancelled_work=keys)
    )
    assert later == ["a"]
    assert await tombstone(store, "a")
    got = []
    for _ in range(40):  # every queued item of a is behind the tombstone
        batch = await store.fetch_work_items(
            "B", limit=50, lock_ms=LOCK, session_lock_ms=S, queues=("default", "gpu")
        )
        got += batch
        if not batch:
            break
    assert {i.instance_id for i in got} <= {"b"}
    assert await store.renew_work_items(held, LOCK) == [i.item_id for i in held]
    for lease_a in held:
        with pytest.raises(LeaseLostError):
            await store.ack_work_item(lease_a, f"done-{lease_a.activity_key}", b"r")
    monkeypatch.undo()
    deleted = await store.purge_work("a")
    assert 0 < deleted <= n
    assert await instance_fields(store, "a") == []
    assert await tombstone(store, "a") == []
    assert not await store._redis.exists(store._pk("a").instance("a").work)
    assert await store.purge_work("a") == 0  # done: a no-op
    # b's work is untouched
    assert len(await instance_fields(store, "b")) > 0


async def test_a_small_terminal_purge_stays_in_the_commit(store: RedisStore) -> None:
    keys = [f"1:{k}" for k in range(1, 11)]
    await schedule(store, "a", [work(k, session="s") for k in keys], ["s"])
    await store.enqueue_message("a", "cancel", b"c")
    lease = await fetch(store)
    await store.commit_turn(
        lease, turn(lease, status=InstanceStatus.CANCELLED, cancelled_work=keys[:2])
    )
    assert await instance_fields(store, "a") == []
    assert await tombstone(store, "a") == []


async def test_delete_instance_finishes_a_big_purge_in_batches_first(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"1:{k}" for k in range(1, PURGE_BATCH + 51)]
    await schedule(store, "a", [work(k, session="s") for k in keys], ["s"])
    await store.enqueue_message("a", "cancel", b"c")

    async def deferred(instance_id: str, **_: Any) -> int:
        return 0  # a worker killed before it purged

    monkeypatch.setattr(store, "purge_work", deferred)
    lease = await fetch(store)
    await store.commit_turn(
        lease, turn(lease, status=InstanceStatus.CANCELLED, cancelled_work=keys)
    )
    monkeypatch.undo()
    assert await tombstone(store, "a")
    before = store.calls["purge_work"]
    await store.delete_instance("a")
    assert store.calls["purge_work"] - before >= 2  # batches, not one script
    assert await instance_fields(store, "a") == [] and await tombstone(store, "a") == []
