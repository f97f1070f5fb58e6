"""The live worker registry: each worker process heartbeats a small record into Redis.

Keys (in the namespace's metadata slot ``{<namespace>}``, so one pipeline touches one slot):

- ``dr:{<ns>}:wk:<worker id>``: STRING, the worker's record as JSON, with a TTL of one lease
  (``ttl_ms``). A killed worker's record expires on its own within one lease.
- ``dr:{<ns>}:workers``: ZSET worker id -> expiry (server clock, ms). Lists the live workers
  without a SCAN; members past their expiry are pruned by every heartbeat and every listing.

A heartbeat is one round trip (a pipeline: SET PX, ZADD, ZREMRANGEBYSCORE), at the pace of the
worker's lease-renewal loop (``runtime.heartbeat``); nothing is sent per unit of work. The
record is operational data, not workflow state: losing it loses nothing but the listing until
the next heartbeat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from durable_redis.errors import ValidationError
from durable_redis.storage._replies import _s
from durable_redis.storage.redis_base import RedisStoreBase

__all__ = ["WorkerInfo", "WorkerRegistry", "registry_for", "workers_key"]

# At most this many owned sessions are listed in a record (the count is always exact).
MAX_LISTED_SESSIONS = 50


def workers_key(namespace: str) -> str:
    return f"dr:{{{namespace}}}:workers"


def worker_record_key(namespace: str, worker_id: str) -> str:
    return f"dr:{{{namespace}}}:wk:{worker_id}"


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One live worker as it last reported itself (times: ms since the epoch, server clock)."""

    worker_id: str
    host: str
    pid: int
    version: str
    app: str
    queues: tuple[str, ...]
    started_at_ms: int
    last_heartbeat_ms: int
    ttl_ms: int
    turns_in_flight: int = 0
    activities_in_flight: int = 0
    jobs_in_flight: int = 0
    sessions_owned: int = 0
    sessions: tuple[str, ...] = field(default=())  # "<instance id>/<session id>", bounded

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerInfo:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValidationError("worker record is not a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in raw.items() if k in known}
        fields["queues"] = tuple(fields.get("queues", ()))
        fields["sessions"] = tuple(fields.get("sessions", ()))
        return cls(**fields)


class WorkerRegistry:
    """Heartbeats and listing of live workers, on a ``RedisStore``'s connection."""

    def __init__(self, store: RedisStoreBase) -> None:
        self._store = store
        self._r: Any = store._r
        self.namespace = store.namespace
        self._set = workers_key(store.namespace)

    async def heartbeat(self, info: WorkerInfo) -> None:
        """Write ``info`` with a TTL of ``info.ttl_ms`` (one round trip)."""
        if info.ttl_ms < 1:
            raise ValidationError("ttl_ms must be >= 1")
        expires = info.last_heartbeat_ms + info.ttl_ms
        pipe = self._r.pipeline(transaction=False)
        pipe.set(worker_record_key(self.namespace, info.worker_id), info.to_json(), px=info.ttl_ms)
        pipe.zadd(self._set, {info.worker_id: expires})
        pipe.zremrangebyscore(self._set, "-inf", f"({info.last_heartbeat_ms}")
        await pipe.execute()

    async def remove(self, worker_id: str) -> None:
        """Drop a worker at once (graceful shutdown)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.delete(worker_record_key(self.namespace, worker_id))
        pipe.zrem(self._set, worker_id)
        await pipe.execute()

    async def list(self) -> list[WorkerInfo]:
        """The live workers, oldest first."""
        now = await self._store.server_time_ms()
        ids = [_s(m) for m in await self._r.zrangebyscore(self._set, now, "+inf")]
        if not ids:
            return []
        rows: Sequence[Any] = await self._r.mget(
            [worker_record_key(self.namespace, i) for i in ids]
        )
        found: list[WorkerInfo] = []
        for row in rows:
            if row is None:
                continue
            try:
                found.append(WorkerInfo.from_json(row))
            except (ValueError, TypeError):
                continue  # a record from an incompatible version: not ours to judge
        found.sort(key=lambda w: (w.started_at_ms, w.worker_id))
        return found


def registry_for(store: Any) -> WorkerRegistry | None:
    """The registry of ``store`` (unwrapping proxies with ``.inner``), None for other stores."""
    while not isinstance(store, RedisStoreBase) and hasattr(store, "inner"):
        store = store.inner
    if isinstance(store, RedisStoreBase):
        return WorkerRegistry(store)
    return None
