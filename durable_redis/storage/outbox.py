"""Cross-partition delivery for ``RedisStore`` with ``partitions > 1``: a commit's messages
to other partitions go to the committing partition's outbox; ``deliver_outbox`` applies them
in the destinations, ``sweep_outboxes`` delivers what crashed committers left."""

from __future__ import annotations

from typing import Any

from durable_redis.storage._replies import _s
from durable_redis.storage.redis_base import RedisStoreBase
from durable_redis.storage.scripts import Status, raise_for_status


class OutboxMixin(RedisStoreBase):
    """Deliver partition outboxes (docs/storage.md "Cluster")."""

    # -- outbox (cross-partition delivery) ----------------------------------------------------

    _OUTBOX_FIELDS = ("d", "v", "c", "n", "r", "p", "h", "i")

    async def deliver_outbox(self, partition: int, *, batch: int = 100) -> int:
        """Deliver partition ``partition``'s outbox, oldest first; returns entries delivered.

        Apply (``outbox_apply`` in each destination partition, deduped by tombstones) THEN
        remove (``outbox_ack``): a crash in between leaves the entry for a later delivery, which
        the destination drops. Every deliverer takes the outbox from its oldest entry, so a
        message is never applied before an older one of the same source partition.
        """
        epoch = await self._ready()
        pk = self._parts[partition]
        delivered = 0
        while True:
            entries = [_s(e) for e in await self._r.zrange(pk.outbox, 0, batch - 1)]
            if not entries:
                return delivered
            fields = [f"{e}|{f}" for e in entries for f in self._OUTBOX_FIELDS]
            values = await self._r.hmget(pk.outbox_data, fields)
            by_dest: dict[int, list[list[Any]]] = {}
            width = len(self._OUTBOX_FIELDS)
            for n, entry in enumerate(entries):
                d, v, c, name, version, parent, has_input, inp = values[n * width : n * width + 8]
                if d is None:  # delivered and removed meanwhile (or a half-removed entry)
                    continue
                target, mid = entry.split("\n", 1)
                row = [target, mid, d, _s(v or b""), _s(c or b"0"), name or b"", version or b""]
                row += [parent or b"", _s(has_input or b"0"), inp or b""]
                by_dest.setdefault(self._pk(target).index, []).append(row)
            for dest, rows in by_dest.items():
                dk = self._parts[dest]
                for i in range(0, len(rows), 50):
                    chunk = rows[i : i + 50]
                    keys = [
                        dk.pmeta,
                        dk.seq,
                        dk.oq_ready,
                        dk.oq_locks,
                        dk.oq_marker,
                        dk.inbox,
                        dk.idx_created,
                        dk.idx_status("pending"),
                    ]
                    args: list[Any] = [epoch, self._tombstone_ms, len(chunk)]
                    for row in chunk:
                        tk = dk.instance(_s(row[0]))
                        keys += [tk.record, tk.done, tk.mz, tk.mh]
                        args += row
                    reply = await self._eval("outbox_apply", keys, args)
                    if reply[0] != Status.OK:
                        raise_for_status("outbox_apply", reply)
            reply = await self._eval(
                "outbox_ack", [pk.pmeta, pk.outbox, pk.outbox_data], [epoch, *entries]
            )
            if reply[0] != Status.OK:
                raise_for_status("outbox_ack", reply)
            delivered += int(reply[1])
            if len(entries) < batch:
                return delivered

    async def sweep_outboxes(self) -> int:
        """Deliver what committers left in any outbox (they crashed between commit and
        delivery). One ZCARD per partition; runs from idle fetches at most every
        ``outbox_sweep_s``."""
        await self._ready()
        if len(self._parts) < 2:
            return 0
        pipe = self._r.pipeline(transaction=False)
        for pk in self._parts:
            pipe.zcard(pk.outbox)
        counts = await pipe.execute()
        delivered = 0
        for pk, count in zip(self._parts, counts, strict=True):
            if int(count):
                delivered += await self.deliver_outbox(pk.index)
        return delivered
