"""The instance signal (``Store.instance_signals``): a turn that ends an instance or records an
update's reply, and a delete, publish the instance id on its partition's idx:terminal channel,
and a waiter of that instance wakes at once, without polling (on a Redis Cluster through the
doorbell's sharded subscriptions). Ordering on the one listener
connection lets each "no signal" check be exact: a later signal of another instance has
arrived, so an earlier one of this instance would have too."""

from __future__ import annotations

import anyio
import pytest

from durable_redis.storage import InstanceStatus, RedisStore
from durable_redis.storage.keys import partition_of
from tests.storage.store_support import fetch, start, timer, turn

pytestmark = pytest.mark.anyio


def _beside(store: RedisStore, iid: str) -> str:
    """An id in ``iid``'s partition: FIFO between the two, and their signals come on one
    connection, in order (a cluster has one per node)."""
    parts = len(store._parts)
    return next(
        c
        for c in (f"{iid}-{n}" for n in range(1000))
        if partition_of(c, parts) == partition_of(iid, parts)
    )


async def _end(store: RedisStore, iid: str) -> None:
    """Start ``iid`` and end it in one turn (a terminal commit: a signal)."""
    await start(store, iid)
    lease = await fetch(store)
    assert lease.instance_id == iid
    await store.commit_turn(lease, turn(lease, status=InstanceStatus.COMPLETED, output=b"r"))


async def test_a_terminal_commit_wakes_the_instances_waiter(store: RedisStore) -> None:
    b = _beside(store, "a")
    await start(store, "a")
    await start(store, b)
    async with store.instance_signals("a") as signal, store.instance_signals(b) as other:
        assert signal.live and other.live
        lease = await fetch(store)
        assert lease.instance_id == "a"
        now = await store.server_time_ms()
        # running (no signal), with a timer due now: the instance has a next turn
        await store.commit_turn(lease, turn(lease, messages=[timer("a", "t", now)]))
        lease = await fetch(store)
        assert lease.instance_id == b
        await store.commit_turn(lease, turn(lease, status=InstanceStatus.COMPLETED))
        with anyio.fail_after(5):
            await other.wait(30)  # b's signal came...
        assert not signal.event.is_set()  # ...and none for a's non-terminal turn before it
        lease = await fetch(store)
        await store.commit_turn(lease, turn(lease, status=InstanceStatus.FAILED, error=b"e"))
        with anyio.fail_after(5):
            await signal.wait(30)  # woken by the channel (a re-check would take 30 s)
        assert not signal.event.is_set()  # wait() consumed it


async def test_an_update_reply_and_a_delete_signal_too(store: RedisStore) -> None:
    await start(store, "u")
    async with store.instance_signals("u") as signal:
        lease = await fetch(store)
        await store.commit_turn(lease, turn(lease, update_replies=[("up1", b"answer")]))
        with anyio.fail_after(5):
            await signal.wait(30)
        assert await store.get_update_reply("u", "up1") == b"answer"
        await store.delete_instance("u", force=True)
        with anyio.fail_after(5):
            await signal.wait(30)
        assert await store.get_instance("u") is None


async def test_a_signal_between_the_read_and_the_wait_is_kept(store: RedisStore) -> None:
    x = _beside(store, "k")
    async with store.instance_signals("k") as signal, store.instance_signals(x) as later:
        await _end(store, "k")  # ends before this waiter waits
        await _end(store, x)
        with anyio.fail_after(5):
            await later.wait(30)
        assert signal.event.is_set()
        with anyio.fail_after(1):
            await signal.wait(30)  # returns at once


async def test_a_wait_without_a_signal_times_out(store: RedisStore) -> None:
    async with store.instance_signals("nobody") as signal:
        assert signal.live
        t0 = anyio.current_time()
        await signal.wait(0.05)
        assert anyio.current_time() - t0 >= 0.04
        assert not signal.event.is_set()
