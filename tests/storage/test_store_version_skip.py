"""Claims that pass over instances (version routing, issue 16): ``fetch_orchestration(skip=)``
leaves the skipped instances queued for other workers and arms no wake-up for them."""

from __future__ import annotations

import anyio
import pytest

from durable_redis.storage import RedisStore
from durable_redis.storage.keys import partition_of
from tests.storage.store_support import fetch, start

pytestmark = pytest.mark.anyio


async def test_a_claim_passes_over_skipped_instances_and_leaves_them_to_others(
    store: RedisStore,
) -> None:
    # all three in one partition, so the claim order (FIFO within a partition) is known
    n = store.partitions
    a, b, c = [
        iid
        for iid in (f"v{i}" for i in range(1000))
        if partition_of(iid, n) == partition_of("v0", n)
    ][:3]
    for iid in (a, b, c):
        await start(store, iid)
    lease = await store.fetch_orchestration(lock_ms=5_000, skip=[a, b])
    assert lease is not None and lease.instance_id == c
    pk = store._pk(a)
    await store._r.delete(pk.oq_marker)  # the wake-ups of the starts, consumed
    assert await store.fetch_orchestration(lock_ms=5_000, skip=[a, b]) is None
    # no wake-up armed for work this worker passes over (it would wake itself in a loop)
    assert await store._r.zcard(pk.oq_marker) == 0
    other = await fetch(store)  # a worker that has the version takes it at once
    assert other.instance_id == a
    await store.abandon_orchestration(other, count_attempt=False)
    again = await fetch(store)
    assert again.instance_id == a and again.messages[0].attempt == 1  # nothing consumed


async def test_an_expired_lock_of_a_skipped_instance_is_left_to_others(store: RedisStore) -> None:
    await start(store, "v2-a")
    await fetch(store, lock_ms=50)  # its worker died: the lock expires
    await anyio.sleep(0.1)  # past the 50 ms lease, on the server clock too
    await start(store, "v1-b")
    lease = await store.fetch_orchestration(lock_ms=5_000, skip=["v2-a"])
    assert lease is not None and lease.instance_id == "v1-b"
    recovered = await fetch(store)
    assert recovered.instance_id == "v2-a"
