"""The activity queue and sessions of ``RedisStore``: fetch, ack, renew and abandon work
items; renew and release session ownership."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from durable_redis.ids import STORED, parse_flow_group, session_key, validate_id
from durable_redis.storage._replies import _opt, _s, _work_leases
from durable_redis.storage.base import (
    LostSessions,
    OrchestrationLease,
    SessionRef,
    WorkBatch,
    WorkItemLease,
)
from durable_redis.storage.packing import PURGE_BATCH  # noqa: F401  (re-exported)
from durable_redis.storage.redis_base import RedisStoreBase
from durable_redis.storage.scripts import Status, raise_for_status

# Work item ids purge_work examines per call: ~1-3 ms of Lua on a loaded 2-core machine, where
# 1,000 took 10-50 ms and 200 took 10-30 ms (tests/reliability/test_big_purge.py).
PURGE_SCAN = 100


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """One queue, summed over the partitions: activity work items ready (plain and session),
    delayed and leased (running), jobs leased (running), and ``paused`` (in every partition).
    Jobs ready and delayed are ``JobQueueInfo``'s (``client.list_queues``)."""

    name: str
    paused: bool
    work_ready: int
    work_delayed: int
    work_running: int
    jobs_running: int

    @property
    def running(self) -> int:
        """Work in flight on this queue: leased jobs and work items (0 = drained)."""
        return self.work_running + self.jobs_running


class ActivityQueueMixin(RedisStoreBase):
    """Work items (activities) and the sessions that pin them to a worker."""

    _wq_rr = -1  # the queue a multi-queue fetch starts with rotates on each fetch

    # -- activity queue ----------------------------------------------------------------------

    async def fetch_work_items(
        self,
        worker_id: str,
        *,
        limit: int,
        lock_ms: int,
        wait_ms: int = 0,
        session_lock_ms: int | None = None,
        claim_new_sessions: bool = True,
        check_sessions: Sequence[SessionRef] = (),
        queues: Sequence[str] = ("default",),
    ) -> WorkBatch:
        await self._ready()
        validate_id(worker_id, "worker id", rule=STORED)
        served = _queues_arg(queues)
        if limit < 1:
            raise ValueError("limit must be >= 1")
        checks: dict[int, list[SessionRef]] = {}
        if session_lock_ms is not None and not claim_new_sessions:
            for pk, group in self._by_partition(check_sessions, lambda s: s.instance_id):
                checks[pk.index] = group
        # one blocking wait covers every queue served: the markers of all of them, everywhere
        markers: list[str] = []
        for pk in self._parts:
            for queue in served:
                _, _, marker, smarker = pk.wq_queue_keys(queue)
                markers.append(marker)
                if session_lock_ms is not None and (claim_new_sessions or checks):
                    markers.append(smarker)
            if session_lock_ms is not None:
                markers.append(pk.wq_wake(worker_id))

        async def attempt() -> WorkBatch:
            # the queue that goes first turns per call: a busy queue cannot starve the others
            self._wq_rr = (self._wq_rr + 1) % len(served)
            order = ",".join(served[self._wq_rr :] + served[: self._wq_rr])
            return await self._try_fetch_work(
                worker_id, limit, lock_ms, session_lock_ms, claim_new_sessions, checks, order
            )

        items: WorkBatch = await self._fetch_waiting(markers, wait_ms, attempt)
        return items

    async def _try_fetch_work(
        self,
        worker_id: str,
        limit: int,
        lock_ms: int,
        session_lock_ms: int | None,
        claim_new: bool,
        checks: dict[int, list[SessionRef]],
        order: str = "default",
    ) -> WorkBatch:
        epoch = await self._ready()
        out: list[WorkItemLease] = []
        closed: list[SessionRef] = []
        taken: list[SessionRef] = []
        budget = 0  # new sessions that slots found free in earlier partitions may still claim
        n = len(self._parts)
        self._rr = (self._rr + 1) % n
        for offset in range(n):
            pk = self._parts[(self._rr + offset) % n]
            checked = checks.get(pk.index, [])
            if len(out) >= limit and not checked:
                continue
            reply = await self._eval(
                "fetch_work_items",
                [
                    pk.pmeta,
                    pk.seq,
                    pk.wq_items,
                    pk.wq_ready,
                    pk.wq_sready,
                    pk.wq_delayed,
                    pk.wq_leases,
                    pk.wq_marker,
                    pk.wq_smarker,
                    pk.sess,
                ],
                [
                    epoch,
                    worker_id,
                    secrets.token_hex(8),
                    max(0, limit - len(out)),
                    lock_ms,
                    _opt(session_lock_ms),
                    "1" if claim_new else "0",
                    self._session_window,
                    budget,
                    order,
                    *[session_key(s.instance_id, s.session_id) for s in checked],
                ],
            )
            if reply[0] != Status.OK:
                raise_for_status("fetch_work_items", reply)
            flat = reply[2]
            if not flat:
                self.calls["fetch_work_items:empty"] += 1
            out += _work_leases(flat, int(reply[1]))
            if len(reply) > 3:
                closed += [checked[int(k) - 1] for k in reply[3]]
                taken += [checked[int(k) - 1] for k in reply[4]]
                budget = max(0, budget + len(reply[3]) + len(reply[4]) - int(reply[5]))
        return WorkBatch(out, LostSessions([*closed, *taken], closed))

    async def ack_work_item(
        self,
        lease: WorkItemLease,
        message_id: str,
        completion: bytes,
        *,
        lock_ms: int | None = None,
    ) -> OrchestrationLease | None:
        epoch = await self._ready()
        validate_id(message_id, "message id", rule=STORED)
        iid = lease.instance_id
        pk = self._pk(iid)
        ik = pk.instance(iid)
        guess = self._exec_guess.get(iid, 1)
        nonce = self._lock_nonce() if lock_ms is not None else ""
        reply = await self._eval(
            "ack_work_item",
            [
                pk.pmeta,
                pk.seq,
                pk.wq_items,
                pk.wq_leases,
                pk.wq_ready,
                pk.wq_sready,
                pk.wq_delayed,
                pk.sess,
                ik.work,
                ik.record,
                ik.done,
                ik.mz,
                ik.mh,
                pk.oq_ready,
                pk.oq_locks,
                pk.oq_marker,
                pk.oq_lock,
                ik.history(guess),
            ],
            [
                epoch,
                lease.item_id,
                lease.token,
                iid,
                message_id,
                completion,
                nonce,
                lock_ms or 0,
                self._max_messages,
                guess,
            ],
        )
        if reply[0] != Status.OK:
            raise_for_status("ack_work_item", reply, lease.item_id.replace("\n", "/"))
        if len(reply) == 1:
            return None
        self.calls["ack_work_item:locked"] += 1
        return await self._lease_from_lock(iid, _s(reply[1]), reply[2:], lock_ms or 0)

    async def renew_work_items(
        self, leases: Sequence[WorkItemLease], lock_ms: int, session_lock_ms: int | None = None
    ) -> list[str]:
        epoch = await self._ready()
        lost: list[str] = []
        for pk, group in self._by_partition(leases, lambda lease: lease.instance_id):
            args: list[Any] = [epoch, lock_ms, _opt(session_lock_ms)]
            for lease in group:
                args += [lease.item_id, lease.token]
            reply = await self._eval(
                "renew_work_items", [pk.pmeta, pk.wq_items, pk.wq_leases, pk.sess], args
            )
            if reply[0] != Status.OK:
                raise_for_status("renew_work_items", reply)
            lost += [_s(x) for x in reply[2]]
        return lost

    async def abandon_work_item(
        self, lease: WorkItemLease, *, delay_ms: int = 0, count_attempt: bool = True
    ) -> None:
        epoch = await self._ready()
        pk = self._pk(lease.instance_id)
        reply = await self._eval(
            "abandon_work_item",
            [
                pk.pmeta,
                pk.wq_items,
                pk.wq_leases,
                pk.wq_ready,
                pk.wq_sready,
                pk.wq_delayed,
                pk.wq_marker,
                pk.wq_smarker,
            ],
            [epoch, lease.item_id, lease.token, max(0, delay_ms), "1" if count_attempt else "0"],
        )
        if reply[0] != Status.OK:
            raise_for_status("abandon_work_item", reply, lease.item_id.replace("\n", "/"))

    async def purge_work(self, instance_id: str, *, batch: int = PURGE_SCAN) -> int:
        """Delete the work items a terminal commit left under its purge tombstone, ``batch``
        ids per script call (each call short: docs/storage.md "Big purge"). Returns the
        items deleted; a no-op without a tombstone."""
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        return await purge_tombstoned(self, instance_id, batch)

    async def queue_status(self, queue: str, *, wake: bool = False) -> QueueStatus:
        """The state of ``queue`` for jobs and work items (one script per partition; it reads
        the partition's leases and delayed items, so it costs O(in flight + delayed)). With
        ``wake`` (after a resume) it wakes the workers waiting on its work items."""
        from durable_redis.core.jobs import validate_queue

        validate_queue(queue)
        epoch = await self._ready()
        paused, totals = 0, [0, 0, 0, 0]
        for pk in self._parts:
            reply = await self._eval(
                "queue_status",
                [pk.pmeta, pk.wq_items, pk.wq_delayed, pk.wq_leases, pk.jq_jobs, pk.jq_leases],
                [epoch, queue, "1" if wake else "0"],
            )
            if reply[0] != Status.OK:
                raise_for_status("queue_status", reply, queue)
            paused += int(reply[1])
            totals = [t + int(x) for t, x in zip(totals, reply[2:6], strict=True)]
        return QueueStatus(queue, paused == len(self._parts), *totals)

    # -- sessions ----------------------------------------------------------------------------

    async def renew_sessions(
        self, worker_id: str, sessions: Sequence[SessionRef], lock_ms: int
    ) -> LostSessions:
        epoch = await self._ready()
        lost: list[SessionRef] = []
        closed: list[SessionRef] = []
        for pk, group in self._by_partition(sessions, lambda s: s.instance_id):
            reply = await self._eval(
                "renew_sessions",
                [pk.pmeta, pk.sess],
                [
                    epoch,
                    worker_id,
                    lock_ms,
                    *[session_key(s.instance_id, s.session_id) for s in group],
                ],
            )
            if reply[0] != Status.OK:
                raise_for_status("renew_sessions", reply)
            lost += [group[int(i) - 1] for i in reply[1]]
            if len(reply) > 2:
                closed += [group[int(i) - 1] for i in reply[2]]
        return LostSessions(lost, closed)

    async def release_sessions(
        self,
        worker_id: str,
        sessions: Sequence[SessionRef],
        queues: Sequence[str] = ("default",),
    ) -> None:
        epoch = await self._ready()
        served = ",".join(_queues_arg(queues))
        for pk, group in self._by_partition(sessions, lambda s: s.instance_id):
            reply = await self._eval(
                "release_sessions",
                [pk.pmeta, pk.sess, pk.wq_smarker, pk.wq_items],
                [
                    epoch,
                    worker_id,
                    served,
                    *[session_key(s.instance_id, s.session_id) for s in group],
                ],
            )
            if reply[0] != Status.OK:
                raise_for_status("release_sessions", reply)


async def purge_tombstoned(store: RedisStoreBase, instance_id: str, batch: int = PURGE_SCAN) -> int:
    """``purge_work`` until the instance's tombstone is gone (``RedisStore.purge_work``, and
    ``delete_instance`` first, so that it never deletes a big purge's leftovers in one script)."""
    epoch = await store._ready()
    pk = store._pk(instance_id)
    keys = [
        pk.pmeta,
        pk.wq_items,
        pk.wq_ready,
        pk.wq_sready,
        pk.wq_delayed,
        pk.wq_leases,
        pk.instance(instance_id).work,
        pk.sess,
    ]
    deleted = 0
    while True:
        reply = await store._eval("purge_work", keys, [epoch, instance_id, batch])
        if reply[0] != Status.OK:
            raise_for_status("purge_work", reply, instance_id)
        deleted += int(reply[1])
        if int(reply[2]) == 1:
            store.calls["purge_work:items"] += deleted
            return deleted


def _queues_arg(queues: Sequence[str]) -> list[str]:
    """The queues a worker serves, validated, duplicates dropped (none: "default")."""
    from durable_redis.core.jobs import validate_queue

    if isinstance(queues, str):
        raise TypeError("queues is a sequence of queue names, not a str")
    out = list(dict.fromkeys(validate_queue(q) for q in queues))
    return out or ["default"]


async def routed_ready_counts(r: Any, pk: Any) -> tuple[int, int]:
    """(plain, session) work items ready in partition ``pk`` that the wq:ready / wq:sready
    counts leave out: those of the activity queues other than "default" (named in its
    jq:queues SET) and the keyed ones waiting in their flow groups (less the groups' own
    round-robin entries, which those counts include)."""
    queues = [_s(q) for q in await r.smembers(pk.jq_queues)]
    groups = [
        parse_flow_group(_s(f)[:-2]) for f in await r.hkeys(pk.wq_groups) if _s(f).endswith("|c")
    ]
    if not queues and not groups:
        return 0, 0
    pipe = r.pipeline(transaction=False)
    for q in queues:
        ready, sready, _, _ = pk.wq_queue_keys(q)
        pipe.zcard(ready)
        pipe.zcard(sready)
    for q, key in groups:
        pipe.zcard(pk.wq_group(q, key))
        pipe.zscore(pk.wq_queue_keys(q)[0], "\n" + key)
    replies = await pipe.execute()
    counts = [int(n) for n in replies[: 2 * len(queues)]]
    keyed = replies[2 * len(queues) :]
    waiting = sum(
        int(n) - (entry is not None) for n, entry in zip(keyed[0::2], keyed[1::2], strict=True)
    )
    return sum(counts[0::2]) + waiting, sum(counts[1::2])
