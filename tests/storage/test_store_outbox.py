"""Cross-partition delivery (P > 1): the outbox, written in the commit, delivered at least once,
applied once (tombstones), swept after a crash; and wake-ups across partitions."""

from __future__ import annotations

import time

import anyio
import pytest

from durable_redis.storage import InstanceCreate, OutboundMessage, RedisStore
from durable_redis.storage.keys import partition_of
from tests.harness import StoreHarness
from tests.storage.store_support import LOCK, start, turn

pytestmark = pytest.mark.anyio


async def partitioned(h: StoreHarness) -> StoreHarness:
    """``h`` itself on the cluster (P = 8); elsewhere a fresh namespace with P = 4."""
    if h.store.partitions > 1:
        return h
    return await h.fresh(4)


def ids_in_distinct_partitions(store: RedisStore, n: int) -> list[str]:
    seen: dict[int, str] = {}
    for k in range(10_000):
        p = partition_of(f"i{k}", store.partitions)
        seen.setdefault(p, f"i{k}")
        if len(seen) == n:
            return list(seen.values())
    raise AssertionError("not enough partitions")


async def fetch_id(store: RedisStore, iid: str):
    """Fetch until ``iid`` comes (committing others untouched)."""
    for _ in range(50):
        lease = await store.fetch_orchestration(lock_ms=LOCK, wait_ms=1000)
        assert lease is not None, f"expected {iid} to be fetchable"
        if lease.instance_id == iid:
            return lease
        await store.abandon_orchestration(lease, delay_ms=200, count_attempt=False)
    raise AssertionError(iid)


async def test_child_in_another_partition_and_result_back(store_harness: StoreHarness) -> None:
    h = await partitioned(store_harness)
    s = h.store
    parent, child = ids_in_distinct_partitions(s, 2)
    await start(s, parent)
    lease = await fetch_id(s, parent)
    create = InstanceCreate(name="child", parent_instance_id=parent, input=b"ci")
    msg = OutboundMessage(child, "start-child", b"go", create=create)
    await s.commit_turn(lease, turn(lease, messages=[msg]))
    assert await s.list_children(parent) == [child]
    info = await s.get_instance(child)
    assert info is not None and info.parent_instance_id == parent and info.input == b"ci"
    lease = await fetch_id(s, child)
    assert [m.message_id for m in lease.messages] == ["start-child"]
    await s.commit_turn(lease, turn(lease, messages=[OutboundMessage(parent, "result", b"42")]))
    lease = await fetch_id(s, parent)
    assert [(m.message_id, m.data) for m in lease.messages] == [("result", b"42")]
    assert await s.delete_instance(parent, force=True) == 2
    assert await s.get_instance(child) is None


async def test_redelivery_after_consumption_is_dropped(store_harness: StoreHarness) -> None:
    h = await partitioned(store_harness)
    s = h.store
    a, b = ids_in_distinct_partitions(s, 2)
    await start(s, a)
    await start(s, b)
    lease = await fetch_id(s, a)
    await s.commit_turn(lease, turn(lease, messages=[OutboundMessage(b, "ev", b"x")]))
    calls = h.script_calls
    _name, keys, args = next(c for c in reversed(calls) if c[0] == "outbox_apply")
    consumed: list[str] = []
    while (lease := await s.fetch_orchestration(lock_ms=LOCK, wait_ms=500)) is not None:
        consumed += [m.message_id for m in lease.messages]
        await s.commit_turn(lease, turn(lease))
    assert sorted(consumed) == sorted(["ev", f"start-{b}"])
    await s.enqueue_message(b, "later", b"y")  # another turn: b's consumed-set moves on
    lease = await fetch_id(s, b)
    await s.commit_turn(lease, turn(lease))
    reply = await s._eval("outbox_apply", keys, args)  # a late redelivery
    assert list(reply) == [0, 0]
    assert await s.fetch_orchestration(lock_ms=LOCK) is None


async def test_leftovers_are_swept_by_any_worker(store_harness: StoreHarness) -> None:
    h = await partitioned(store_harness)
    s = h.store
    a, b = ids_in_distinct_partitions(s, 2)
    await start(s, a)
    await start(s, b)
    lease = await fetch_id(s, b)
    await s.commit_turn(lease, turn(lease))

    async def crash(partition: int, **_: object) -> int:
        raise ConnectionError("committer died before delivering")

    s.deliver_outbox = crash  # type: ignore[method-assign]
    lease = await fetch_id(s, a)
    await s.commit_turn(lease, turn(lease, messages=[OutboundMessage(b, "ev", b"x")]))
    other: RedisStore = await h.twin()
    assert await other.sweep_outboxes() == 1
    assert await other.sweep_outboxes() == 0
    lease = await fetch_id(other, b)
    assert [m.message_id for m in lease.messages] == ["ev"]


async def test_idle_waiter_wakes_on_work_in_any_partition(store_harness: StoreHarness) -> None:
    h = await partitioned(store_harness)
    s = h.store
    ids = ids_in_distinct_partitions(s, s.partitions)
    waiter: RedisStore = await h.twin()
    for iid in (ids[0], ids[-1]):
        got: list[float] = []

        async def wait(out: list[float] = got) -> None:
            lease = await waiter.fetch_orchestration(lock_ms=LOCK, wait_ms=5000)
            assert lease is not None
            out.append(time.monotonic())
            await waiter.commit_turn(lease, turn(lease))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.3)
            t0 = time.monotonic()
            await start(s, iid)
        assert got and got[0] - t0 < 1.0, f"woke after {got[0] - t0:.3f}s"
