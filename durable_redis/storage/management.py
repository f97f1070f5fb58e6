"""Management operations of ``RedisStore``: get/read history/list (one partition, or a k-way
merge over several), children, delete (tree), prune, queue depths, status counts, janitor."""

from __future__ import annotations

from collections.abc import Sequence

from durable_redis.errors import (
    InstanceNotFoundError,
    InstanceRunningError,
    StoreError,
    ValidationError,
)
from durable_redis.ids import STORED, list_cursor, parse_list_cursor, validate_id
from durable_redis.storage._replies import _info, _opt, _s
from durable_redis.storage.activities import purge_tombstoned, routed_ready_counts
from durable_redis.storage.base import InstanceInfo, InstancePage, InstanceStatus, QueueDepths
from durable_redis.storage.keys import STATUS_ORDER, PartitionKeys
from durable_redis.storage.redis_base import RedisStoreBase
from durable_redis.storage.scripts import Status, raise_for_status


class ManagementMixin(RedisStoreBase):
    """Reads and clean-up of instances, outside the queues."""

    # -- management --------------------------------------------------------------------------

    async def get_instance(self, instance_id: str) -> InstanceInfo | None:
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        fields = await self._r.hgetall(self._pk(instance_id).instance(instance_id).record)
        if not fields:
            return None
        return _info(instance_id, {_s(k): v for k, v in fields.items()})

    async def request_fail_held(self, instance_id: str) -> bool:
        """Mark a held instance to be failed at its next retried turn; False if not held."""
        epoch = await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        pk = self._pk(instance_id)
        reply = await self._eval("fail_held", [pk.pmeta, pk.instance(instance_id).record], [epoch])
        if reply[0] != Status.OK:
            raise_for_status("fail_held", reply, instance_id)
        return int(reply[1]) == 1

    async def reset_instance(
        self,
        instance_id: str,
        *,
        execution_id: int,
        history_len: int,
        keep: int,
        started: bytes,
        reset_event: bytes,
        wake: tuple[str, bytes],
        reapply: Sequence[tuple[str, bytes]] = (),
    ) -> int | None:
        epoch = await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        pk = self._pk(instance_id)
        ik = pk.instance(instance_id)
        keys = [
            pk.pmeta,
            pk.seq,
            pk.oq_ready,
            pk.oq_locks,
            pk.oq_lock,
            pk.oq_marker,
            ik.record,
            ik.done,
            ik.mz,
            ik.mh,
            ik.history(execution_id),
            ik.history(execution_id + 1),
            pk.idx_terminal,
            *pk.idx_statuses,
            pk.wq_items,
            pk.wq_ready,
            pk.wq_sready,
            pk.wq_delayed,
            pk.wq_leases,
            ik.work,
        ]
        args = [epoch, instance_id, execution_id, history_len, keep, started, reset_event, *wake]
        args += [part for message in reapply for part in message]
        reply = await self._eval("reset_instance", keys, args)
        if reply[0] == Status.RETRY:
            return None  # it moved since the caller read it: nothing changed, read again
        if reply[0] != Status.OK:
            raise_for_status("reset_instance", reply, instance_id)
        self._remember_exec(instance_id, int(reply[1]))
        return int(reply[1])

    async def read_history(self, instance_id: str, execution_id: int | None = None) -> list[bytes]:
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        ik = self._pk(instance_id).instance(instance_id)
        if execution_id is None:
            current = await self._r.hget(ik.record, "exec")
            if current is None:
                return []
            execution_id = int(current)
        if execution_id < 1:
            return []
        return list(await self._r.lrange(ik.history(execution_id), 0, -1))

    async def list_instances(
        self,
        *,
        status: InstanceStatus | None = None,
        name: str | None = None,
        created_after_ms: int | None = None,
        created_before_ms: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> InstancePage:
        """Oldest first (or newest first). The cursor is opaque: pass it back with the same
        filters and order."""
        await self._ready()
        if len(self._parts) > 1 or newest_first:
            return await self._list_merged(
                status, name, created_after_ms, created_before_ms, limit, cursor, newest_first
            )
        part, score, after = 0, created_after_ms, ""
        if cursor:
            p, s, after = _cursor(cursor)
            part, score = (-1 if p is None else p), int(s)
            if not 0 <= part < len(self._parts):
                raise ValidationError(f"invalid list cursor {cursor!r}")
        found: list[InstanceInfo] = []
        scanned = 0
        for pk in self._parts[part:]:
            index = pk.idx_status(InstanceStatus(status).value) if status else pk.idx_created
            lo = "-inf" if score is None else str(score)
            hi = "+inf" if created_before_ms is None else f"({created_before_ms}"
            while True:
                rows = await self._r.zrangebyscore(
                    index, lo, hi, start=0, num=limit + 50, withscores=True
                )
                rows = [
                    (_s(m), int(sc))
                    for m, sc in rows
                    if not (after and score is not None and int(sc) == score and _s(m) <= after)
                ]
                if not rows:
                    break
                infos = await self._infos(pk, [m for m, _ in rows])
                for (member, sc), info in zip(rows, infos, strict=True):
                    score, after = sc, member
                    scanned += 1
                    if info is None or (name is not None and info.name != name):
                        continue
                    found.append(info)
                    if len(found) >= limit:
                        return InstancePage(found, list_cursor(pk.index, sc, member))
                if scanned >= limit * 20:
                    return InstancePage(found, list_cursor(pk.index, score, after))
                lo = str(score)
            score, after = created_after_ms, ""
        return InstancePage(found, None)

    async def _list_merged(
        self,
        status: InstanceStatus | None,
        name: str | None,
        created_after_ms: int | None,
        created_before_ms: int | None,
        limit: int,
        cursor: str | None,
        newest_first: bool = False,
    ) -> InstancePage:
        """``list_instances`` over every partition: a k-way merge by (created, id), so the order
        is global (ascending, or descending if ``newest_first``). Cursor ``m:<created_ms>:<id>``:
        the last row returned."""
        score: int | None = None
        after = ""
        if cursor:
            _m, cursor_score, after = _cursor(cursor)
            score = int(cursor_score)
        elif not newest_first:
            score = created_after_ms
        # `lo`/`hi` are the fixed far end; the near end moves with the cursor position.
        far = (
            ("-inf" if created_after_ms is None else str(created_after_ms))
            if newest_first
            else ("+inf" if created_before_ms is None else f"({created_before_ms}")
        )

        def beyond(row: tuple[int, str]) -> bool:
            """Whether ``row`` comes after the cursor position in this order."""
            if score is None or not after:
                return True
            return row < (score, after) if newest_first else row > (score, after)

        page = limit + 50
        found: list[InstanceInfo] = []
        scanned = 0
        while True:
            if newest_first:
                near = (
                    ("+inf" if created_before_ms is None else f"({created_before_ms}")
                    if score is None
                    else str(score)
                )
            else:
                near = "-inf" if score is None else str(score)
            merged: list[tuple[int, str, PartitionKeys]] = []
            bound: tuple[int, str] | None = None  # rows past this may be missing (full pages)
            for pk in self._parts:
                index = pk.idx_status(InstanceStatus(status).value) if status else pk.idx_created
                if newest_first:
                    raw = await self._r.zrevrangebyscore(
                        index, near, far, start=0, num=page, withscores=True
                    )
                else:
                    raw = await self._r.zrangebyscore(
                        index, near, far, start=0, num=page, withscores=True
                    )
                rows = [(int(sc), _s(m)) for m, sc in raw]
                if len(rows) == page and (
                    bound is None or (rows[-1] > bound if newest_first else rows[-1] < bound)
                ):
                    bound = rows[-1]
                merged += [(sc, m, pk) for sc, m in rows if beyond((sc, m))]
            merged.sort(key=lambda r: (r[0], r[1]), reverse=newest_first)
            if bound is not None:
                edge = bound
                merged = [
                    r
                    for r in merged
                    if ((r[0], r[1]) >= edge if newest_first else (r[0], r[1]) <= edge)
                ]
            if not merged:
                return InstancePage(found, None)
            for row_score, member, pk in merged:
                (info,) = await self._infos(pk, [member])
                score, after = row_score, member
                scanned += 1
                if info is None or (name is not None and info.name != name):
                    continue
                found.append(info)
                if len(found) >= limit:
                    return InstancePage(found, list_cursor(None, row_score, member))
            if scanned >= limit * 20:
                return InstancePage(found, list_cursor(None, score, after))

    async def list_children(self, instance_id: str) -> list[str]:
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        members = await self._r.smembers(self._pk(instance_id).instance(instance_id).children)
        return sorted(_s(m) for m in members)

    async def delete_instance(self, instance_id: str, *, force: bool = False) -> int:
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        return await self._delete_tree(instance_id, force=force, missing_ok=False)

    async def _delete_tree(self, instance_id: str, *, force: bool, missing_ok: bool) -> int:
        root = await self.get_instance(instance_id)
        if root is None:
            if missing_ok:
                return 0
            raise InstanceNotFoundError(f"instance {instance_id!r} not found")
        order = [instance_id]
        seen = {instance_id}
        i = 0
        while i < len(order):
            for child in await self.list_children(order[i]):
                if child not in seen:
                    seen.add(child)
                    order.append(child)
            i += 1
        if not force:
            for iid in order:
                info = await self.get_instance(iid)
                if info is not None and not info.status.is_terminal:
                    raise InstanceRunningError(
                        f"instance {iid!r} is {info.status.value}; pass force=True to delete it"
                    )
        deleted = 0
        for iid in reversed(order):
            if await self._delete_one(iid, force=force):
                deleted += 1
        return deleted

    async def _delete_one(
        self, instance_id: str, *, force: bool, min_age_ms: int | None = None
    ) -> bool:
        epoch = await self._ready()
        pk = self._pk(instance_id)
        ik = pk.instance(instance_id)
        if await self._r.hexists(pk.sess, f"{instance_id}\n|p"):  # a big purge left over
            await purge_tombstoned(self, instance_id)
        for _ in range(10):
            current, parent = await self._r.hmget(ik.record, ["exec", "parent"])
            execution = int(current or 0)
            parent_id = _s(parent) if parent is not None else ""
            remote_parent = bool(parent_id) and self._pk(parent_id).index != pk.index
            pc = pk.instance(parent_id).children if parent_id else ik.children
            if remote_parent:  # unlinked below, in the parent's partition
                pc = ik.children
            keys = [
                pk.pmeta,
                pk.oq_lock,
                pk.oq_locks,
                pk.oq_ready,
                pk.idx_created,
                pk.idx_terminal,
                *pk.idx_statuses,
                pk.wq_items,
                pk.wq_ready,
                pk.wq_sready,
                pk.wq_delayed,
                pk.wq_leases,
                pk.sess,
                ik.record,
                ik.done,
                ik.mz,
                ik.mh,
                ik.work,
                ik.sessions,
                ik.children,
                pc,
                *[ik.history(e) for e in range(1, execution + 1)],
                ik.values,
                ik.replies,
                ik.stream,
            ]
            reply = await self._eval(
                "delete_instance",
                keys,
                [
                    epoch,
                    instance_id,
                    "1" if force else "0",
                    execution,
                    parent_id,
                    _opt(min_age_ms),
                ],
            )
            code = reply[0]
            if code == Status.OK:
                if remote_parent:
                    parent_children = self._pk(parent_id).instance(parent_id).children
                    await self._r.srem(parent_children, instance_id)
                return True
            if code in (Status.NOT_FOUND, Status.NOT_ELIGIBLE):
                return False
            if code != Status.RETRY:
                raise_for_status("delete_instance", reply, instance_id)
        raise StoreError(f"delete_instance({instance_id!r}): instance keeps changing")

    async def prune_executions(self, instance_id: str, *, keep_last: int = 1) -> int:
        """Delete the history of old executions; the current one is always kept."""
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        ik = self._pk(instance_id).instance(instance_id)
        current = await self._r.hget(ik.record, "exec")
        if current is None:
            raise InstanceNotFoundError(f"instance {instance_id!r} not found")
        last_to_delete = int(current) - max(1, keep_last)
        if last_to_delete < 1:
            return 0
        return int(await self._r.delete(*[ik.history(e) for e in range(1, last_to_delete + 1)]))

    async def queue_depths(self) -> QueueDepths:
        await self._ready()
        now = await self.server_time_ms()
        messages = timers = work = session_work = delayed = leased = locked = 0
        for pk in self._parts:
            ready = [_s(m) for m in await self._r.zrange(pk.oq_ready, 0, -1)]
            locks = [_s(m) for m in await self._r.zrange(pk.oq_locks, 0, -1)]
            locked += len(locks)
            pipe = self._r.pipeline(transaction=False)
            for iid in {*ready, *locks}:
                mz = pk.instance(iid).mz
                pipe.zcard(mz)
                pipe.zcount(mz, f"({now}", "+inf")
            counts = await pipe.execute()
            messages += sum(counts[0::2])
            timers += sum(counts[1::2])
            pipe = self._r.pipeline(transaction=False)
            for key in (pk.wq_ready, pk.wq_sready, pk.wq_delayed, pk.wq_leases):
                pipe.zcard(key)
            w, sw, d, le = await pipe.execute()
            routed, routed_sessions = await routed_ready_counts(self._r, pk)  # docs/routing.md
            work += w + routed
            session_work += sw + routed_sessions
            delayed += d
            leased += le
        return QueueDepths(
            orchestration_messages=messages,
            work_items=work,
            session_work_items=session_work,
            timers=timers,
            extra={
                "delayed_work_items": delayed,
                "leased_work_items": leased,
                "locked_instances": locked,
            },
        )

    async def count_by_status(self) -> dict[InstanceStatus, int]:
        await self._ready()
        counts = dict.fromkeys(InstanceStatus, 0)
        for pk in self._parts:
            pipe = self._r.pipeline(transaction=False)
            for status in STATUS_ORDER:
                pipe.zcard(pk.idx_status(status))
            for status, n in zip(STATUS_ORDER, await pipe.execute(), strict=True):
                counts[InstanceStatus(status)] += int(n)
        return counts

    async def run_janitor(self, *, retention_ms: int, batch: int = 200) -> int:
        await self._ready()
        removed = 0
        for pk in self._parts:
            cutoff = await self.server_time_ms() - retention_ms
            ids = await self._r.zrangebyscore(pk.idx_terminal, "-inf", cutoff, start=0, num=batch)
            for raw in ids:
                if await self._delete_one(_s(raw), force=False, min_age_ms=retention_ms):
                    removed += 1
        return removed


def _cursor(cursor: str) -> tuple[int | None, str, str]:
    parsed = parse_list_cursor(cursor)
    if parsed is None:
        raise ValidationError(f"invalid list cursor {cursor!r} (pass back a next_cursor)")
    return parsed
