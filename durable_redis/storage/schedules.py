"""Schedules of ``RedisStore``: declare / pause / resume / delete (``set_schedule``), the due
index, and the claim of a due tick with its jobs (``claim_schedule``) or its orchestration
instances (``claim_schedule_start``) in one script.

A schedule lives in the partition of its name; the jobs and instances of its ticks get ids
chosen in that same partition (``schedule_job_id``, ``schedule_instance_id``), so one script
claims the tick and enqueues the job or creates the instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from durable_redis.core.jobs import validate_queue
from durable_redis.core.schedules import tick_instance_base
from durable_redis.ids import STORED, schedule_job_id, validate_id
from durable_redis.storage._replies import _s
from durable_redis.storage.keys import PartitionKeys, id_in_partition
from durable_redis.storage.redis_base import RedisStoreBase
from durable_redis.storage.scripts import Status, raise_for_status

__all__ = ["ScheduleRecord", "ScheduleStoreMixin"]


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    name: str
    spec: bytes
    next_due_ms: int | None
    paused: bool
    last_job_id: str | None


class ScheduleStoreMixin(RedisStoreBase):
    def _sched_pk(self, name: str) -> PartitionKeys:
        return self._pk(name)

    def schedule_job_id(self, name: str, tick_ms: int) -> str:
        """The id of the job of one tick: deterministic, in the schedule's partition."""
        return self._in_schedule_partition(name, schedule_job_id(name, tick_ms))

    def schedule_instance_id(self, name: str, tick_ms: int) -> str:
        """The instance id of one tick (``<name>@<tick ms>``, a ``:k`` suffix added when that
        hashes to another partition): deterministic, in the schedule's partition."""
        return self._in_schedule_partition(name, tick_instance_base(name, tick_ms))

    def _in_schedule_partition(self, name: str, base: str) -> str:
        return id_in_partition(name, base, len(self._parts))

    async def _set_schedule(
        self, op: str, name: str, spec: bytes = b"", spec_hash: str = "", due: int | None = None
    ) -> str:
        epoch = await self._ready()
        validate_id(name, "schedule name", rule=STORED)
        pk = self._sched_pk(name)
        reply = await self._eval(
            "set_schedule",
            [pk.pmeta, pk.sc_defs, pk.sc_due],
            [epoch, op, name, spec, spec_hash, "" if due is None else int(due)],
        )
        if reply[0] != Status.OK:
            raise_for_status("set_schedule", reply, name)
        return _s(reply[1])

    async def declare_schedule(
        self, name: str, spec: bytes, spec_hash: str, next_due_ms: int
    ) -> str:
        """Create the schedule, or replace it if its spec changed; "created" / "updated" /
        "unchanged"."""
        return await self._set_schedule("declare", name, spec, spec_hash, next_due_ms)

    async def pause_schedule(self, name: str) -> None:
        await self._set_schedule("pause", name)

    async def resume_schedule(self, name: str, next_due_ms: int) -> None:
        await self._set_schedule("resume", name, due=next_due_ms)

    async def delete_schedule(self, name: str) -> None:
        await self._set_schedule("delete", name)

    async def claim_schedule(
        self,
        name: str,
        *,
        expected_due_ms: int,
        next_due_ms: int,
        overlap: str,
        activity: str,
        task: bytes,
        priority: int,
        result_ttl_ms: int,
        ticks: Sequence[int],
        queue: str = "default",
    ) -> tuple[int, bool] | None:
        """Claim the due tick(s); (jobs enqueued, skipped for overlap), or None if another
        worker claimed it first (or it is not due, paused, deleted). The jobs go to ``queue``."""
        epoch = await self._ready()
        validate_queue(queue)
        pk = self._sched_pk(name)
        args: list[Any] = [
            epoch,
            name,
            int(expected_due_ms),
            int(next_due_ms),
            overlap,
            activity,
            task,
            priority,
            result_ttl_ms,
            queue,
        ]
        args += [self.schedule_job_id(name, t) for t in ticks]
        ready, _, marker = pk.jq_queue_keys(queue)
        reply = await self._eval(
            "claim_schedule",
            [pk.pmeta, pk.seq, pk.sc_defs, pk.sc_due, pk.jq_jobs, ready, marker],
            args,
        )
        if reply[0] == Status.NOT_ELIGIBLE:
            return None
        if reply[0] != Status.OK:
            raise_for_status("claim_schedule", reply, name)
        return int(reply[1]), _s(reply[2]) == "overlap"

    async def claim_schedule_start(
        self,
        name: str,
        *,
        expected_due_ms: int,
        next_due_ms: int,
        overlap: str,
        last_instance_id: str | None,
        orchestration: str,
        version: str,
        input: bytes,
        start_message: bytes,
        ticks: Sequence[int],
    ) -> tuple[int, bool] | None:
        """Claim the due tick(s) of an orchestration schedule and create one instance per
        tick (``schedule_instance_id``; an existing one is left alone); (instances started,
        skipped for overlap), or None if another worker claimed it first (or it is not due,
        paused, deleted, or its last instance is not ``last_instance_id``)."""
        epoch = await self._ready()
        pk = self._sched_pk(name)
        iids = [self.schedule_instance_id(name, t) for t in ticks]
        last = pk.instance(last_instance_id or (iids[0] if iids else name))
        keys = [
            pk.pmeta,
            pk.seq,
            pk.sc_defs,
            pk.sc_due,
            pk.oq_ready,
            pk.oq_locks,
            pk.oq_marker,
            pk.idx_created,
            pk.idx_status("pending"),
            last.record,
        ]
        for iid in iids:
            ik = pk.instance(iid)
            keys += [ik.record, ik.done, ik.mz, ik.mh]
        args: list[Any] = [
            epoch,
            name,
            int(expected_due_ms),
            int(next_due_ms),
            overlap,
            last_instance_id or "",
            orchestration,
            version,
            input,
            start_message,
            *iids,
        ]
        reply = await self._eval("claim_schedule_start", keys, args)
        if reply[0] == Status.NOT_ELIGIBLE:
            return None
        if reply[0] != Status.OK:
            raise_for_status("claim_schedule_start", reply, name)
        return int(reply[1]), _s(reply[2]) == "overlap"

    async def list_schedules(self, *, due_before_ms: int | None = None) -> list[ScheduleRecord]:
        """Every schedule (or only those due by ``due_before_ms``, paused ones excluded)."""
        await self._ready()
        out: list[ScheduleRecord] = []
        for pk in self._parts:
            if due_before_ms is None:
                fields = await self._r.hkeys(pk.sc_defs)
                names = sorted({_s(f).rsplit("|", 1)[0] for f in fields})
            else:
                names = [
                    _s(x) for x in await self._r.zrangebyscore(pk.sc_due, "-inf", due_before_ms)
                ]
            for name in names:
                row = await self._r.hmget(pk.sc_defs, [f"{name}|{f}" for f in "snpj"])
                if row[0] is None:
                    continue
                out.append(
                    ScheduleRecord(
                        name=name,
                        spec=row[0],
                        next_due_ms=int(row[1]) if row[1] is not None else None,
                        paused=row[2] is not None and _s(row[2]) == "1",
                        last_job_id=_s(row[3]) if row[3] is not None else None,
                    )
                )
        return out

    async def next_schedule_due_ms(self) -> int | None:
        """The earliest next due time of any active schedule (None: no schedule)."""
        await self._ready()
        best: int | None = None
        for pk in self._parts:
            first = await self._r.zrange(pk.sc_due, 0, 0, withscores=True)
            if first:
                due = int(first[0][1])
                best = due if best is None else min(best, due)
        return best
