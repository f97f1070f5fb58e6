"""Flow control of orchestration starts by key in create_instance (docs/routing.md
"Orchestration starts"): a singleton keeps the key's instance while it is not terminal, a
debounce replaces the pending instance's input and pushes its start, a throttle keeps the
window's instance; a keyed instance must be in its key's partition. Run on a real Redis and
fakeredis (and, with ``--cluster -m cluster``, on a Redis Cluster)."""

from __future__ import annotations

import time

import anyio
import pytest

from durable_redis.errors import ValidationError
from durable_redis.storage import InstanceStatus, RedisStore
from durable_redis.storage.base import InstanceCreate
from tests.harness import StoreHarness
from tests.storage.store_support import turn

pytestmark = pytest.mark.anyio


async def limited(
    store: RedisStore, iid: str | None, key: str, mode: str, data: bytes = b"start"
) -> tuple[str, bool]:
    iid = store.id_for_key(iid, key)
    return await store.create_limited_instance(
        iid,
        InstanceCreate(name="wf", version="1", input=data),
        f"start-{iid}-{data.decode()}",
        data,
        flow_key=key,
        flow_mode=mode,
    )


async def finish(store: RedisStore, iid: str) -> None:
    lease = await store.fetch_orchestration(lock_ms=5_000)
    assert lease is not None and lease.instance_id == iid
    await store.commit_turn(lease, turn(lease, status=InstanceStatus.COMPLETED))


async def test_a_singleton_keeps_the_keys_instance_until_it_ends(store: RedisStore) -> None:
    a, b = store.id_for_key("a", "k"), store.id_for_key("b", "k")  # "a", "b" when P = 1
    assert await limited(store, "a", "k", "singleton") == (a, True)
    assert await limited(store, "b", "k", "singleton") == (a, False)  # pending: kept
    assert await store.get_instance(b) is None  # nothing written for the kept start
    lease = await store.fetch_orchestration(lock_ms=5_000)
    assert lease is not None and lease.instance_id == a
    await store.commit_turn(lease, turn(lease))  # running now: still kept
    assert await limited(store, "b", "k", "singleton") == (a, False)
    await store.enqueue_message(a, "poke", b"poke")
    await finish(store, a)  # the key's instance ended: the next start creates
    assert await limited(store, "b", "k", "singleton") == (b, True)
    c = store.id_for_key("c", "other")
    assert await limited(store, "c", "other", "singleton") == (c, True)  # its own key


async def test_a_debounce_replaces_the_pending_input_and_pushes_its_start(
    store: RedisStore,
) -> None:
    t0 = time.monotonic()
    iid, created = await limited(store, None, "search", "debounce 400", b"one")
    assert created
    assert await store.fetch_orchestration(lock_ms=5_000) is None  # in its quiet period
    await anyio.sleep(0.2)
    assert await limited(store, None, "search", "debounce 400", b"two") == (iid, False)
    info = await store.get_instance(iid)
    assert info is not None and info.input == b"two"
    lease = None
    while lease is None and time.monotonic() - t0 < 5:
        await anyio.sleep(0.05)
        lease = await store.fetch_orchestration(lock_ms=5_000)
    assert lease is not None and lease.instance_id == iid
    assert time.monotonic() - t0 >= 0.5  # 400 ms after the second start, not the first
    assert [m.data for m in lease.messages] == [b"two"]
    # its quiet period is over (it is locked, then running): the next start is a new one
    again, created = await limited(store, None, "search", "debounce 400", b"three")
    assert created and again != iid


async def test_a_throttle_keeps_one_start_per_window(store: RedisStore) -> None:
    # a 2 s window: the calls that must land inside it take milliseconds (tens on a loaded
    # fakeredis), so they do, however slow the machine; the last one waits the window out
    t0 = time.monotonic()
    first, created = await limited(store, None, "daily", "throttle 2000", b"one")
    assert created
    assert await limited(store, None, "daily", "throttle 2000", b"two") == (first, False)
    await finish(store, first)  # ended: the window still holds
    assert time.monotonic() - t0 < 1.5, "the machine is too slow for this test's window"
    assert await limited(store, None, "daily", "throttle 2000", b"three") == (first, False)
    while time.monotonic() - t0 < 2.1:
        await anyio.sleep(0.05)
    nxt, created = await limited(store, None, "daily", "throttle 2000", b"four")
    assert created and nxt != first


async def test_a_keyed_instance_must_be_in_its_keys_partition(
    store: RedisStore, store_harness: StoreHarness
) -> None:
    many = (await store_harness.fresh(4)).store
    from durable_redis.storage.keys import partition_of

    wrong = next(f"i{n}" for n in range(100) if partition_of(f"i{n}", 4) != partition_of("k", 4))
    with pytest.raises(ValidationError):
        await many.create_limited_instance(
            wrong,
            InstanceCreate(name="wf", version="1", input=b"x"),
            "m",
            b"x",
            flow_key="k",
            flow_mode="singleton",
        )
    fixed = many.id_for_key(wrong, "k")
    assert fixed.startswith(wrong) and partition_of(fixed, 4) == partition_of("k", 4)
    with pytest.raises(ValidationError):
        await store.create_limited_instance(
            "a", InstanceCreate(name="wf", version="1"), "m", b"x", flow_key="k", flow_mode="x"
        )
    assert await store.get_instance("a") is None
