"""The durability option: validated, carried by the URL (``?durability=&replica_timeout=``) and
by the CLI's ``--durability`` / ``--scripts`` flags. The failover test is
``tests/reliability/test_replicated_durability.py``."""

from __future__ import annotations

from typing import Any

import pytest

from durable_redis.cli import _parser, _require_url
from durable_redis.errors import ConfigurationError
from durable_redis.storage import RedisStore

pytestmark = pytest.mark.anyio


async def test_the_url_carries_durability(redis_url: str) -> None:
    store: Any = RedisStore.from_url(
        f"{redis_url}?durability=replicated&replica_timeout=0.25", namespace="x"
    )
    try:
        assert store.durability == "replicated"
        assert store._wait == ("WAIT", 1, 250)
    finally:
        await store.close()
    store = RedisStore.from_url(f"{redis_url}?durability=replicated_aof", namespace="x")
    try:
        assert store._wait == ("WAITAOF", 0, 1, 1000)
    finally:
        await store.close()


@pytest.mark.parametrize(
    "options",
    [{"durability": "sync"}, {"durability": "replicated", "replica_timeout": 0}, {"replicas": 0}],
)
async def test_bad_durability_options_are_refused(redis_url: str, options: Any) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore.from_url(redis_url, namespace="x", **options)
    with pytest.raises(ConfigurationError):
        RedisStore.from_url(f"{redis_url}?replica_timeout=soon", namespace="x")


def test_cli_flags_go_into_the_url() -> None:
    args = _parser().parse_args(
        ["status", "x", "--redis-url", "redis://h:1/0", "--durability", "replicated"]
    )
    assert _require_url(args) == "redis://h:1/0?durability=replicated"
    args = _parser().parse_args(
        ["--scripts", "functions", "status", "x", "--redis-url", "redis://h/0?partitions=2"]
    )
    assert _require_url(args) == "redis://h/0?partitions=2&scripts=functions"


@pytest.mark.cluster
async def test_replicated_is_refused_on_a_cluster(redis_cluster: Any) -> None:
    with pytest.raises(ConfigurationError, match="Cluster"):
        RedisStore.from_url(redis_cluster.url, namespace="x", durability="replicated")
