"""``RedisStore.from_url``: the partition count can ride in the URL workers and clients share."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis

from durable_redis.errors import ConfigurationError, DurableRedisError, StoreUnavailableError
from durable_redis.storage._url import _pop_partitions
from durable_redis.storage.redis_store import RedisStore

pytestmark = pytest.mark.anyio


def test_partitions_query_parameter_is_split_off() -> None:
    assert _pop_partitions("redis+cluster://127.0.0.1:7000?partitions=8") == (
        "redis+cluster://127.0.0.1:7000",
        8,
    )
    assert _pop_partitions("unix:///tmp/r.sock?db=0&partitions=4") == ("unix:///tmp/r.sock?db=0", 4)
    assert _pop_partitions("redis://h:1/0") == ("redis://h:1/0", None)
    with pytest.raises(ConfigurationError):
        _pop_partitions("redis://h:1/0?partitions=many")


async def test_a_namespace_created_from_a_url_gets_its_partitions(
    redis_url: str, namespace: str
) -> None:
    sep = "&" if "?" in redis_url else "?"
    store = RedisStore.from_url(f"{redis_url}{sep}partitions=4", namespace=namespace)
    try:
        await store.initialize()
        assert store.partitions == 4
    finally:
        await store.close()
    # a later process without the parameter reads the count from the namespace's metadata
    again = RedisStore.from_url(redis_url, namespace=namespace)
    try:
        await again.initialize()
        assert again.partitions == 4
    finally:
        await again.close()


async def test_an_unreachable_redis_is_a_typed_error(tmp_path: Path) -> None:
    client = Redis(unix_socket_path=str(tmp_path / "nobody.sock"), socket_timeout=1.0)
    store = RedisStore(client, namespace="unreachable", owns_client=True)
    try:
        with anyio.fail_after(30), pytest.raises(StoreUnavailableError) as caught:
            await store.get_instance("i")
        assert isinstance(caught.value, DurableRedisError)
        assert "Redis is unavailable" in str(caught.value)
    finally:
        await store.close()
