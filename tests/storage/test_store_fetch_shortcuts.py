"""A shortcut of the orchestration fetch, held to what the plain fetch does: a commit that
claims the committing worker's next instance (``commit_turn_and_claim``) and phase 2 of that
fetch (``lock_claimed``): the same lock a fetch's claim would take, in the same order, fenced
the same way, and nothing claimed where the round robin over partitions must decide (more than
one partition)."""

from __future__ import annotations

import pytest

from durable_redis.errors import LeaseLostError
from durable_redis.storage import RedisStore
from tests.harness import StoreHarness
from tests.storage.store_support import LOCK, SHORT, fetch, start, timer, turn

pytestmark = pytest.mark.anyio


async def one_partition(store_harness: StoreHarness) -> RedisStore:
    if store_harness.store.partitions == 1:
        return store_harness.store
    return (await store_harness.fresh(partitions=1)).store


async def test_the_commit_claims_the_oldest_ready_instance(store_harness: StoreHarness) -> None:
    store = await one_partition(store_harness)
    for iid in ("a", "b", "c"):
        await start(store, iid)
    lease = await fetch(store)
    assert lease.instance_id == "a"
    taken, claimed = await store.commit_turn_and_claim(lease, turn(lease), lock_ms=LOCK)
    assert taken == [] and claimed is not None and claimed.instance_id == "b"  # FIFO
    # b is locked for us: another fetcher gets c, not b
    other = await fetch(store)
    assert other.instance_id == "c"
    mine = await store.lock_claimed(claimed, LOCK)
    assert mine is not None and mine.instance_id == "b" and mine.token == claimed.token
    assert [m.message_id for m in mine.messages] == ["start-b"] and mine.attempt == 1
    await store.commit_turn(mine, turn(mine))  # a claimed lease commits like a fetched one
    assert await store.fetch_orchestration(lock_ms=LOCK) is None


async def test_nothing_claimable_claims_nothing_and_arms_the_due_time(
    store_harness: StoreHarness,
) -> None:
    store = await one_partition(store_harness)
    await start(store, "a")
    lease = await fetch(store)
    due = lease.fetched_at_ms + 400
    _, claimed = await store.commit_turn_and_claim(
        lease, turn(lease, messages=[timer("a", "t1", due)]), lock_ms=LOCK
    )
    assert claimed is None
    # the timer is not visible yet: nothing fetchable, and the marker holds its due time
    assert await store.fetch_orchestration(lock_ms=LOCK) is None
    r = store._redis
    assert await r.zscore(store._parts[0].oq_marker, "1") == due
    later = await store.fetch_orchestration(lock_ms=LOCK, wait_ms=3_000)
    assert later is not None and later.instance_id == "a"


async def test_the_claim_is_fenced_like_a_fetch(store_harness: StoreHarness) -> None:
    store = await one_partition(store_harness)
    for iid in ("a", "b"):
        await start(store, iid)
    lease = await fetch(store)
    _, claimed = await store.commit_turn_and_claim(lease, turn(lease), lock_ms=SHORT)
    assert claimed is not None and claimed.instance_id == "b"
    # the claimant stalls past its lock: another worker claims b, and the stale claim locks
    # nothing (no lease, the new holder's lock untouched)
    other = await store.fetch_orchestration(lock_ms=LOCK, wait_ms=2_000)
    assert other is not None and other.instance_id == "b" and other.token != claimed.token
    assert await store.lock_claimed(claimed, LOCK) is None
    await store.commit_turn(other, turn(other))


async def test_a_claimed_instance_with_nothing_left_is_released(
    store_harness: StoreHarness,
) -> None:
    store = await one_partition(store_harness)
    for iid in ("a", "b"):
        await start(store, iid)
    lease = await fetch(store)
    _, claimed = await store.commit_turn_and_claim(lease, turn(lease), lock_ms=LOCK)
    assert claimed is not None and claimed.instance_id == "b"
    await store.delete_instance("b", force=True)
    assert await store.lock_claimed(claimed, LOCK) is None
    assert await store.fetch_orchestration(lock_ms=LOCK) is None  # nothing left locked or queued


async def test_a_lost_lease_commits_and_claims_nothing(store_harness: StoreHarness) -> None:
    store = await one_partition(store_harness)
    for iid in ("a", "b"):
        await start(store, iid)
    lease = await fetch(store, lock_ms=SHORT)
    other = await store.fetch_orchestration(lock_ms=LOCK, wait_ms=2_000)  # a's lock expired
    assert other is not None and other.instance_id in ("a", "b")
    if other.instance_id == "b":  # b was first: take a over too, once its lock expired
        other = await store.fetch_orchestration(lock_ms=LOCK, wait_ms=2_000)
        assert other is not None and other.instance_id == "a"
    with pytest.raises(LeaseLostError):
        await store.commit_turn_and_claim(lease, turn(lease), lock_ms=LOCK)


async def test_more_than_one_partition_claims_nothing(store_harness: StoreHarness) -> None:
    store = (await store_harness.fresh(partitions=4)).store
    for i in range(8):
        await start(store, f"i{i}")
    lease = await fetch(store)
    _, claimed = await store.commit_turn_and_claim(lease, turn(lease), lock_ms=LOCK)
    assert claimed is None
    left = set()
    while (got := await store.fetch_orchestration(lock_ms=LOCK)) is not None:
        left.add(got.instance_id)
    assert len(left) == 7  # all still claimable by anyone
