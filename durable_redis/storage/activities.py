"""The activity queue and sessions of ``RedisStore``: fetch, ack, renew and abandon work
items; renew and release session ownership."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from durable_redis.ids import STORED, session_key, validate_id
from durable_redis.storage._replies import _opt, _s, _work_leases
from durable_redis.storage.base import (
    LostSessions,
    OrchestrationLease,
    SessionRef,
    WorkBatch,
    WorkItemLease,
)
from durable_redis.storage.redis_base import RedisStoreBase
from durable_redis.storage.scripts import Status, raise_for_status


class ActivityQueueMixin(RedisStoreBase):
    """Work items (activities) and the sessions that pin them to a worker."""

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
    ) -> WorkBatch:
        await self._ready()
        validate_id(worker_id, "worker id", rule=STORED)
        if limit < 1:
            raise ValueError("limit must be >= 1")
        checks: dict[int, list[SessionRef]] = {}
        if session_lock_ms is not None and not claim_new_sessions:
            for pk, group in self._by_partition(check_sessions, lambda s: s.instance_id):
                checks[pk.index] = group
        markers: list[str] = []
        for pk in self._parts:
            markers.append(pk.wq_marker)
            if session_lock_ms is not None:
                if claim_new_sessions or checks:
                    markers.append(pk.wq_smarker)
                markers.append(pk.wq_wake(worker_id))

        async def attempt() -> WorkBatch:
            return await self._try_fetch_work(
                worker_id, limit, lock_ms, session_lock_ms, claim_new_sessions, checks
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
        nonce = secrets.token_hex(8) if lock_ms is not None else ""
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
        return await self._lease_from_lock(iid, _s(reply[1]), reply[2:])

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

    async def release_sessions(self, worker_id: str, sessions: Sequence[SessionRef]) -> None:
        epoch = await self._ready()
        for pk, group in self._by_partition(sessions, lambda s: s.instance_id):
            reply = await self._eval(
                "release_sessions",
                [pk.pmeta, pk.sess, pk.wq_smarker],
                [epoch, worker_id, *[session_key(s.instance_id, s.session_id) for s in group]],
            )
            if reply[0] != Status.OK:
                raise_for_status("release_sessions", reply)
