"""``StoreHarness``: what a storage test needs beside the store, typed, in one place.

The ``store_harness`` fixture (tests/conftest.py) returns one; ``store`` is its ``.store``.
Nothing is grafted onto ``RedisStore``: the harness carries the recorded script calls, the
backend's name, the raw Redis client, the partition keys of an id, the server clock, and
makers of another client on the same data (``twin``) or of a fresh namespace (``fresh``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from durable_redis.storage.keys import PartitionKeys
from durable_redis.storage.redis_store import RedisStore

Backend = Literal["redis", "fakeredis", "cluster"]
ScriptCall = tuple[str, list[str], list[Any]]  # (script name, keys, args)


@dataclass
class StoreHarness:
    store: RedisStore
    backend: Backend
    namespace: str
    partitions: int | None  # as asked for (None: the store's default)
    script_calls: list[ScriptCall] = field(default_factory=list)  # every script call, in order
    make: Callable[[str, int | None], Awaitable[StoreHarness]] | None = field(
        default=None, repr=False
    )

    @property
    def raw(self) -> Any:
        """The store's own Redis client (redis-py, cluster or fakeredis)."""
        return self.store._r

    def pk(self, instance_id: str) -> PartitionKeys:
        """The keys of the partition ``instance_id`` lives in."""
        return self.store._pk(instance_id)

    async def now_ms(self) -> int:
        """The Redis server's clock (leases and timers run on it)."""
        return await self.store.server_time_ms()

    def calls_named(self, name: str) -> int:
        return sum(1 for call in self.script_calls if call[0] == name)

    async def twin(self) -> RedisStore:
        """Another client (its own connections) on the same namespace and data."""
        return (await self._make(self.namespace, self.partitions)).store

    async def fresh(self, partitions: int | None = None) -> StoreHarness:
        """A new namespace on the same backend, with ``partitions`` partitions."""
        import uuid

        return await self._make(f"t-{uuid.uuid4().hex[:12]}", partitions)

    def _make(self, namespace: str, partitions: int | None) -> Awaitable[StoreHarness]:
        assert self.make is not None, "a harness made outside the store_harness fixture"
        return self.make(namespace, partitions)
