"""Talking to running orchestrations, the storage side (docs/messaging.md): the key-value
state and update replies that ``commit_turn`` writes, and the instance's progress stream.

Reads are plain reads (no turn, no script); writes of the state and replies ride on
``commit_turn`` (its last KEYS/ARGV, packed by ``storage.packing``, re-exported here). An
activity's stream append is one ``XADD`` (activities run at least once, so a retried one may
append again).
"""

from __future__ import annotations

from collections.abc import Sequence

from durable_redis.ids import STORED, validate_id
from durable_redis.storage._replies import _s
from durable_redis.storage.packing import (
    REPLY_TTL_MS,
    STREAM_MAXLEN,
    STREAM_TTL_MS,
    messaging_args,
)
from durable_redis.storage.redis_base import RedisStoreBase

__all__ = [
    "REPLY_TTL_MS",
    "STREAM_MAXLEN",
    "STREAM_TTL_MS",
    "MessagingMixin",
    "StreamEntry",
    "messaging_args",
]

StreamEntry = tuple[str, bytes]
"""(offset, encoded item); offsets are Redis stream ids ``"<ms>-<seq>"``, in order."""


class MessagingMixin(RedisStoreBase):
    """Key-value state, update replies and progress streams of instances."""

    async def get_values(
        self, instance_id: str, keys: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        """The instance's key-value state: every key, or only ``keys`` that are set."""
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        ik = self._pk(instance_id).instance(instance_id)
        if keys is None:
            raw = await self._r.hgetall(ik.values)
            return {_s(k): bytes(v) for k, v in raw.items()}
        wanted = list(keys)
        if not wanted:
            return {}
        found = await self._r.hmget(ik.values, wanted)
        return {k: bytes(v) for k, v in zip(wanted, found, strict=True) if v is not None}

    async def get_update_reply(self, instance_id: str, update_id: str) -> bytes | None:
        """The encoded reply to update ``update_id``, or None while there is none."""
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        reply = await self._r.hget(self._pk(instance_id).instance(instance_id).replies, update_id)
        return None if reply is None else bytes(reply)

    async def append_stream(self, instance_id: str, data: bytes) -> str:
        """Append one encoded item to the instance's progress stream; returns its offset."""
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        key = self._pk(instance_id).instance(instance_id).stream
        pipe = self._r.pipeline(transaction=False)
        pipe.xadd(key, {"d": data}, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.pexpire(key, STREAM_TTL_MS)
        offset, _ = await pipe.execute()
        return _s(offset)

    async def read_stream(
        self, instance_id: str, *, after: str = "0", count: int = 100, block_ms: int | None = None
    ) -> list[StreamEntry]:
        """Entries after offset ``after`` ("0": from the start), oldest first; with
        ``block_ms``, wait up to that long for the first one (``XREAD BLOCK``)."""
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        key = self._pk(instance_id).instance(instance_id).stream
        if block_ms is None:
            rows = await self._r.xrange(key, min=f"({after}" if after != "0" else "-", count=count)
        else:
            reply = await self._r.xread({key: after}, count=count, block=max(1, block_ms))
            rows = reply[0][1] if reply else []
        return [(_s(i), bytes(f.get(b"d", b""))) for i, f in rows]
