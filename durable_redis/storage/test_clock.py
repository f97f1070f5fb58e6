"""The virtual clock of a test namespace (``durable_redis.testing``; docs/testing.md).

A store built with ``test_clock=True`` runs its scripts with ``server_now()`` adding the
namespace's ``clock_offset`` (``lua/includes/test_clock.lua``), reads the same offset into its
own clock, and may only open a namespace whose metadata says ``test_clock=1``: one it created
itself, as a test environment does. Production stores (the default) load the scripts without
that include, so no namespace field can move their clock, and a test store refuses a
namespace it did not create. Two independent switches, both required.

``quiet_view`` tells a test environment whether anything is runnable now and, when nothing is,
the next virtual time something becomes due (auto-skip jumps there).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from durable_redis.errors import ConfigurationError
from durable_redis.ids import lock_token_nonce, session_key
from durable_redis.storage._replies import _s
from durable_redis.storage.keys import PartitionKeys, meta_key
from durable_redis.storage.redis_base import RedisStoreBase

__all__ = ["QuietView", "TestClockMixin"]


@dataclass(frozen=True, slots=True)
class QuietView:
    """What the queues of a namespace hold, judged at virtual time ``now_ms``."""

    now_ms: int
    busy: str | None  # why something is runnable or held by a live worker; None: quiet
    next_due_ms: int | None  # earliest future due time (timers, back-offs, dead leases)


def _locked_by(token: str, tags: Collection[str]) -> bool:
    """Whether a lock token ("<seq>:<nonce>") was taken by a store with one of ``tags``."""
    nonce = lock_token_nonce(token)
    return any(tag and nonce.startswith(tag) for tag in tags)


class TestClockMixin(RedisStoreBase):
    """Test-clock operations of ``RedisStore`` (refused unless it was built with test_clock)."""

    __test__ = False  # not a pytest test class, whatever its name says

    def _need_test_clock(self) -> None:
        if not self._test_clock:
            raise ConfigurationError(
                "the virtual clock is for test environments only (RedisStore(test_clock=True), "
                "as durable_redis.testing builds it)"
            )

    @property
    def test_clock_offset_ms(self) -> int:
        """How far this store's clock runs ahead of the Redis server's (0 in production)."""
        return self._virtual_ms

    def note_test_clock(self, offset_ms: int) -> None:
        """Adopt an offset another store of the same namespace just set (no round trip)."""
        self._need_test_clock()
        self._virtual_ms = max(self._virtual_ms, offset_ms)

    async def set_test_clock_origin(self, offset_ms: int) -> None:
        """Start a fresh test namespace's clock ``offset_ms`` from the server's (either way):
        once, before its clock has moved (ConfigurationError after)."""
        self._need_test_clock()
        await self._ready()
        meta = meta_key(self.namespace)
        if int(await self._r.hget(meta, "clock_offset") or 0) != 0:
            raise ConfigurationError("the test clock has moved already: its origin is set once")
        await self._r.hset(meta, "clock_offset", str(offset_ms))
        for pk in self._parts:
            await self._r.hset(pk.pmeta, "clock_offset", str(offset_ms))
        self._virtual_ms = offset_ms

    async def advance_test_clock(self, ms: int, *, wake: Collection[str] = ()) -> int:
        """Move the namespace's virtual clock ``ms`` forward; returns the new offset.

        Every partition's metadata gets the new offset (the scripts read theirs), then the
        wake-up markers of every partition (and ``wake``, more marker keys) are rung so
        blocked fetches look again at once.
        """
        self._need_test_clock()
        if ms < 0:
            raise ConfigurationError("the virtual clock only moves forward")
        await self._ready()
        offset = int(await self._r.hincrby(meta_key(self.namespace), "clock_offset", int(ms)))
        pipe = self._r.pipeline(transaction=False)
        for pk in self._parts:
            pipe.hset(pk.pmeta, "clock_offset", str(offset))
        await pipe.execute()
        self._virtual_ms = offset
        await self.ring_markers(wake)
        return offset

    async def _queue_names(self, pk: PartitionKeys) -> list[str]:
        """ "default" and the partition's other queues, of jobs and activities (jq:queues)."""
        named = sorted(_s(q) for q in await self._r.smembers(pk.jq_queues))
        return ["default", *[q for q in named if q != "default"]]

    async def ring_markers(self, extra: Collection[str] = ()) -> None:
        """Wake every blocked fetch of the namespace (member "0" on each marker)."""
        for pk in self._parts:
            markers = [pk.oq_marker]
            for q in await self._queue_names(pk):
                markers.append(pk.jq_queue_keys(q)[2])
                markers.extend(pk.wq_queue_keys(q)[2:])
            markers.extend(k for k in extra if k.startswith(pk.prefix))
            pipe = self._r.pipeline(transaction=False)
            for marker in markers:
                pipe.zadd(marker, {"0": 0})
            await pipe.execute()

    async def expire_session_lease(self, instance_id: str, session_id: str) -> None:
        """End a session's lease now: unowned, its lease in the past (its worker's next
        renewal finds it gone and drops it; its next work is claimed anew)."""
        self._need_test_clock()
        await self._ready()
        pk = self._pk(instance_id)
        sk = session_key(instance_id, session_id)
        if not await self._r.hexists(pk.sess, f"{sk}|o"):
            raise ConfigurationError(f"no open session {session_id!r} of {instance_id!r}")
        await self._r.hset(pk.sess, mapping={f"{sk}|o": "", f"{sk}|u": "0"})
        await self.ring_markers()

    async def quiet_view(
        self, now_ms: int, dead_workers: Collection[str] = (), dead_tags: Collection[str] = ()
    ) -> QuietView:
        """Is anything runnable at ``now_ms`` or held by a live worker? Else, what comes next.

        Work leased to a worker in ``dead_workers`` (a crash a test injected), and instances
        locked by a store whose ``lock_tag`` is in ``dead_tags`` (that worker's), are not busy:
        their lease deadline is a due time, when the work is redelivered. A paused queue's
        ready work is not busy either (nothing takes it until it is resumed).
        """
        await self._ready()
        due: list[int] = []
        for pk in self._parts:
            busy = await self._partition_busy(pk, dead_workers, dead_tags, due)
            if busy is not None:
                return QuietView(now_ms, busy, None)
        upcoming = min(due, default=None)
        if upcoming is not None and upcoming <= now_ms:
            return QuietView(now_ms, "work is due now", upcoming)
        return QuietView(now_ms, None, upcoming)

    async def _partition_busy(
        self,
        pk: PartitionKeys,
        dead_workers: Collection[str],
        dead_tags: Collection[str],
        due: list[int],
    ) -> str | None:
        """Why partition ``pk`` is busy, or None; appends its due times to ``due``."""
        queues = await self._queue_names(pk)
        pipe = self._r.pipeline(transaction=False)
        pipe.zrange(pk.oq_locks, 0, -1, withscores=True)
        pipe.zrange(pk.wq_leases, 0, -1, withscores=True)
        pipe.zcard(pk.jq_leases)
        pipe.zcard(pk.outbox)
        for first in (pk.oq_ready, pk.wq_delayed, pk.sc_due):
            pipe.zrange(first, 0, 0, withscores=True)
        for q in queues:
            ready, delayed, _ = pk.jq_queue_keys(q)
            wready, sready, _, _ = pk.wq_queue_keys(q)
            pipe.hexists(pk.pmeta, f"qp:{q}")
            pipe.zcard(ready)
            pipe.zrange(delayed, 0, 0, withscores=True)
            pipe.zcard(wready)
            pipe.zrange(sready, 0, 99)
        rows = await pipe.execute()
        locks, leases, job_leases, outbox = rows[:4]
        for first in rows[4:7]:
            due.extend(int(score) for _m, score in first)
        busy: list[str] = []
        if job_leases:
            busy.append("a job is running")
        if outbox:
            busy.append("cross-partition messages wait for delivery")
        session_items: list[Any] = []
        for i in range(len(queues)):
            paused, jobs_ready, job_delayed, plain, in_session = rows[7 + 5 * i : 12 + 5 * i]
            due.extend(int(score) for _m, score in job_delayed)
            if paused:
                continue
            if jobs_ready:
                busy.append("a job is ready")
            if plain:
                busy.append("activity work is ready")
            session_items.extend(in_session)
        if busy:
            return busy[0]
        if locks:
            tokens = await self._r.hmget(pk.oq_lock, [m for m, _ in locks])
            for (_iid, deadline), token in zip(locks, tokens, strict=True):
                if token is None or not _locked_by(_s(token), dead_tags):
                    return "an orchestration turn is locked"
                due.append(int(deadline))
        if session_items:
            # session work waits for its session's owner: busy unless that owner is dead
            # (then it is due when the session's lease runs out)
            fields = [f"{_s(i)}|{f}" for i in session_items for f in ("i", "s")]
            parts = [_s(p or b"") for p in await self._r.hmget(pk.wq_items, fields)]
            sks = [f"{parts[k]}\n{parts[k + 1]}" for k in range(0, len(parts), 2)]
            owned = await self._r.hmget(pk.sess, [f"{sk}|{f}" for sk in sks for f in "ou"])
            for k in range(0, len(owned), 2):
                owner, until = owned[k], owned[k + 1]
                if not owner or _s(owner) not in dead_workers:
                    return "session work is ready"
                due.append(int(until or 0))
        if leases:
            holders = await self._r.hmget(pk.wq_items, [f"{_s(m)}|w" for m, _ in leases])
            for (_member, score), holder in zip(leases, holders, strict=True):
                if holder is None or _s(holder) not in dead_workers:
                    return "an activity is running"
                due.append(int(score))
        return None
