"""Script calls keep their pooled connection checked out between calls (no pool get/release
per call); a connection the server dropped meanwhile is re-made by the retry, losing nothing."""

from __future__ import annotations

import uuid

import anyio
import pytest

from durable_redis.storage.redis_store import RedisStore
from tests.harness import StoreHarness
from tests.storage.store_support import fetch, start

pytestmark = pytest.mark.anyio


async def test_script_connection_is_kept_and_survives_a_server_kill(store: RedisStore) -> None:
    if store._pool is None:
        pytest.skip("not applicable: on the cluster, scripts go through the cluster client")
    await start(store, "a")
    kept = list(store._idle_conns)
    assert len(kept) == 1
    in_use = len(store._pool._in_use_connections)
    await start(store, "b")
    assert store._idle_conns == kept  # the same connection, not back and forth to the pool
    assert len(store._pool._in_use_connections) == in_use
    if "fakeredis" in type(store._r).__module__:
        return  # no server to drop connections
    # the server drops every other client: the kept connection is dead until used again
    await store._r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await start(store, "c")
    leases = [await fetch(store) for _ in range(3)]
    assert sorted(lease.instance_id for lease in leases) == ["a", "b", "c"]


async def test_close_hands_the_kept_connections_back(
    store: RedisStore, store_harness: StoreHarness
) -> None:
    if store._pool is None:
        pytest.skip("not applicable: on the cluster, scripts go through the cluster client")
    twin = await store_harness.twin()
    await start(twin, "a")
    assert twin._idle_conns
    pool = twin._pool
    kept = twin._idle_conns[0]
    await twin.close()
    assert twin._idle_conns == [] and kept not in pool._in_use_connections


async def test_a_burst_of_first_calls_reloads_scripts_on_the_connections_it_holds(
    redis_url: str,
) -> None:
    """Scripts gone (SCRIPT FLUSH, a restart): every call in a burst gets NOSCRIPT while it
    holds a connection; the reload runs on that connection, so a small pool is not run out
    ("Too many connections" before: the reload checked out a second one)."""
    store = RedisStore.from_url(
        redis_url, namespace=f"t-{uuid.uuid4().hex[:12]}", max_connections=4
    )
    await store.initialize()
    try:
        await store._r.script_flush()
        async with anyio.create_task_group() as tg:
            for i in range(3):  # 3 script calls at once; the 4th connection is the client's own
                tg.start_soon(start, store, f"i{i}")
        leases = [await fetch(store) for _ in range(3)]
        assert sorted(lease.instance_id for lease in leases) == ["i0", "i1", "i2"]
    finally:
        await store.close()


async def test_new_connections_share_one_driver_info(redis_url: str) -> None:
    """redis-py 8 would look its version up in the package metadata for every new connection
    (~0.5 ms each); ``from_url`` resolves it once, so the connections a worker opens as its
    concurrency ramps up share one ``DriverInfo``."""
    driver_info = pytest.importorskip("redis.driver_info", reason="not applicable: redis-py < 8")
    store = RedisStore.from_url(redis_url, namespace=f"t-{uuid.uuid4().hex[:8]}")
    try:
        pool = store._r.connection_pool
        first, second = pool.make_connection(), pool.make_connection()
        assert isinstance(first.driver_info, driver_info.DriverInfo)
        assert first.driver_info is second.driver_info
        await store.server_time_ms()  # a working connection: the same CLIENT SETINFO as before
    finally:
        await store.close()
