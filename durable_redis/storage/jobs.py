"""The job queue of ``RedisStore``: enqueue (batched), fetch (batched), ack (batched), renew,
cancel, retry, read, list, and a wait for a job's end (a completion channel, no polling).

Every state change is one script (``lua/*_job*.lua``); reads are plain HMGET / ZRANGE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from durable_redis.core.jobs import validate_queue
from durable_redis.errors import ValidationError
from durable_redis.ids import STORED, parse_flow_group, validate_id
from durable_redis.storage._replies import _s
from durable_redis.storage.base import InstanceSignal
from durable_redis.storage.job_types import (
    FLOW_LIMITS,
    ExistingJobPolicy,
    JobAck,
    JobLease,
    JobQueueInfo,
    JobRecord,
    JobState,
    KeptJob,
    NewJob,
)
from durable_redis.storage.keys import PartitionKeys, id_in_partition, partition_of
from durable_redis.storage.redis_base import RedisStoreBase
from durable_redis.storage.scripts import Status, raise_for_status

__all__ = ["JobQueueMixin"]

log = logging.getLogger("durable_redis.storage.jobs")

_FIELDS = ("d", "s", "a", "k", "w", "b", "f", "o", "e", "p")
_ENQUEUE_CHUNK = 1000  # jobs per enqueue script call (the calls of a batch share a round trip)
_ACK_CHUNK = 500
_RECENT = 4096  # completion messages kept by the listener
_PRIORITY_LIMIT = 1 << 15  # |priority| below this keeps the score exact (2^15 * 2^36 < 2^53)


def split_job_data(data: bytes) -> tuple[int, int, int, str, bytes]:
    """(ready score, result ttl ms, created ms, name, spec) of a job's ``d`` field."""
    head, _, spec = data.partition(b"\n")
    score, ttl, created, name = head.split(b" ", 3)
    return int(score), int(ttl), int(created), name.decode("utf-8"), spec


_STATES = {b"completed": JobState.COMPLETED, b"failed": JobState.FAILED}


def parse_ended(message: bytes) -> list[tuple[str, str, JobState, bytes | None]]:
    """(job id, ready score, state, payload or None) of each entry of a completion message
    (``job_ended`` in ``lua/includes/jobs.lua``)."""
    out: list[tuple[str, str, JobState, bytes | None]] = []
    pos = 0
    while pos < len(message):
        a = message.index(b"\n", pos)
        b = message.index(b"\n", a + 1)
        c = message.index(b"\n", b + 1)
        d = message.index(b"\n", c + 1)
        size = int(message[c + 1 : d])
        job_id, score = message[pos:a].decode("utf-8"), message[a + 1 : b].decode()
        state = _STATES.get(message[b + 1 : c], JobState.CANCELLED)
        payload = None if size < 0 else message[d + 1 : d + 1 + size]
        out.append((job_id, score, state, payload))
        pos = d + 1 + max(size, 0)
    return out


def _record_from_message(job_id: str, state: JobState, payload: bytes | None) -> JobRecord:
    """A terminal job as its completion message tells it (state, output or error only)."""
    done = state is JobState.COMPLETED
    return JobRecord(
        job_id=job_id,
        name="",
        state=state,
        spec=b"",
        priority_score=0,
        created_at_ms=0,
        deliveries=0,
        attempt=1,
        started_at_ms=None,
        finished_at_ms=None,
        worker_id=None,
        output=payload if done else None,
        error=None if done else payload,
        progress=None,
        result_ttl_ms=0,
    )


def _record(job_id: str, row: Sequence[Any]) -> JobRecord | None:
    f = dict(zip(_FIELDS, row, strict=True))
    if f["s"] is None or f["d"] is None:
        return None
    score, ttl, created, name, spec = split_job_data(f["d"])

    def num(name: str) -> int | None:
        v = f[name]
        return None if v is None else int(v)

    return JobRecord(
        job_id=job_id,
        name=name,
        state=JobState(_s(f["s"])),
        spec=spec,
        priority_score=score,
        created_at_ms=created,
        deliveries=num("a") or 0,
        attempt=num("k") or 1,
        started_at_ms=num("b"),
        finished_at_ms=num("f"),
        worker_id=_s(f["w"]) if f["w"] is not None else None,
        output=f["o"],
        error=f["e"],
        progress=f["p"],
        result_ttl_ms=ttl,
    )


_LIVE = ("jq_jobs", "jq_ready", "jq_delayed", "jq_leases", "jq_marker", "jq_done")
_SCRIPT_KEYS: dict[str, tuple[str, ...]] = {
    "enqueue_jobs": ("pmeta", "seq", "jq_jobs", "jq_ready", "jq_delayed", "jq_marker", "jq_done"),
    "fetch_jobs": ("pmeta", "seq", *_LIVE),
    "ack_jobs": ("pmeta", *_LIVE),
    "renew_jobs": ("pmeta", "jq_jobs", "jq_leases"),
    "cancel_job": ("pmeta", "jq_jobs", "jq_ready", "jq_delayed", "jq_leases", "jq_done"),
    "retry_job": ("pmeta", "jq_jobs", "jq_ready", "jq_marker", "jq_done"),
    "pause_job_queue": ("pmeta", "jq_jobs"),
}


def job_script_keys(pk: PartitionKeys, script: str) -> list[str]:
    """The KEYS of a job script in partition ``pk`` (in the order of the Lua header)."""
    return [getattr(pk, name) for name in _SCRIPT_KEYS[script]]


def enqueue_args(epoch: str, policy: ExistingJobPolicy, jobs: Sequence[NewJob]) -> list[Any]:
    """ARGV of one ``enqueue_jobs`` call: jobs sharing name and options (a pure function)."""
    j = jobs[0]
    args: list[Any] = [
        epoch,
        policy.value,
        j.name,
        j.priority,
        "" if j.delay_ms is None else int(j.delay_ms),
        "" if j.at_ms is None else int(j.at_ms),
        int(j.result_ttl_ms),
        j.queue,
        "" if j.flow_key is None else j.flow,
        "" if j.flow_key is None else j.flow_mode,
    ]
    if j.flow_key is None:
        for job in jobs:
            args += [job.job_id, job.spec]
    else:
        for job in jobs:
            args += [job.job_id, job.spec, job.flow_key]
    return args


def _options(job: NewJob) -> tuple[Any, ...]:
    keyed = job.flow_key is not None
    return (
        job.name,
        job.priority,
        job.delay_ms,
        job.at_ms,
        job.result_ttl_ms,
        job.queue,
        keyed,
        job.flow if keyed else "",
        job.flow_mode if keyed else "",
    )


_MODE = re.compile(r"((debounce|throttle) [1-9][0-9]*)?")


def ack_args(epoch: str, acks: Sequence[JobAck]) -> list[Any]:
    """ARGV of one ``ack_jobs`` call."""
    args: list[Any] = [epoch]
    for a in acks:
        args += [a.lease.job_id, a.lease.token, a.outcome.value, a.payload, max(0, a.delay_ms)]
    return args


class JobQueueMixin(RedisStoreBase):
    """Jobs: activity calls with no orchestration around them."""

    _job_waiters: dict[str, list[asyncio.Future[None]]]
    _job_listener: asyncio.Task[None] | None
    _job_recent: OrderedDict[str, tuple[str, JobState, bytes | None]]
    _job_fresh: dict[str, str]  # job id -> ready score of the incarnation this store created
    _job_generation: int
    _job_rr: int
    _job_qrr: int

    # -- plumbing ----------------------------------------------------------------------------
    async def _eval_many(self, name: str, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Several calls of one script in one round trip (a pipeline; each call is atomic)."""
        # one by one: on a cluster (slots on several nodes), and when ``_eval`` was wrapped on
        # this instance (the tests' slot checker must see every call)
        if len(calls) == 1 or self._is_cluster or "_eval" in self.__dict__:
            return [await self._eval(name, keys, args) for keys, args in calls]
        script = self._scripts[name]
        pipe = self._r.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        replies = await pipe.execute(raise_on_error=False)
        out: list[Any] = []
        for (keys, args), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError) or (
                isinstance(reply, ResponseError) and "NOSCRIPT" in str(reply)
            ):
                reply = await self._eval(name, keys, args)  # not run: safe to send again
            elif isinstance(reply, Exception):
                raise reply
            out.append(list(reply))
        return out

    def _job_pk(self, job_id: str) -> PartitionKeys:
        return self._pk(job_id)

    def job_id_for_key(self, job_id: str | None, flow_key: str) -> str:
        """An id in ``flow_key``'s partition (every job of a key lives there, so its limits
        are judged in one script): ``job_id`` itself when it hashes there (always with one
        partition), else ``job_id`` with the first ``:k`` suffix that does; a fresh random id
        when ``job_id`` is None."""
        n = len(self._parts)
        if job_id is not None:
            return id_in_partition(flow_key, job_id, n)
        want = partition_of(flow_key, n)
        while True:
            fresh = secrets.token_hex(16)
            if partition_of(fresh, n) == want:
                return fresh

    def _job_groups(self, ids: Sequence[str]) -> list[tuple[PartitionKeys, list[int]]]:
        """Positions of ``ids`` by partition (one group without hashing when P = 1)."""
        if len(self._parts) == 1:
            return [(self._parts[0], list(range(len(ids))))]
        return self._by_partition(range(len(ids)), lambda i: ids[i])

    # -- producer ----------------------------------------------------------------------------
    async def enqueue_jobs(
        self, jobs: Sequence[NewJob], *, policy: ExistingJobPolicy = ExistingJobPolicy.KEEP
    ) -> list[JobState | KeptJob | None]:
        epoch = await self._ready()
        n = len(self._parts)
        for j in jobs:
            validate_id(j.job_id, "job id", rule=STORED)
            if j.flow_key is not None:
                validate_id(j.flow_key, "flow key", rule=STORED)
                if partition_of(j.job_id, n) != partition_of(j.flow_key, n):
                    raise ValidationError(
                        f"job {j.job_id!r} is not in the partition of its flow key "
                        f"{j.flow_key!r} (job_id_for_key gives an id that is)"
                    )
        for option in {_options(j) for j in jobs}:
            validate_id(option[0], "job name", rule=STORED)
            validate_queue(option[5])
            if not -_PRIORITY_LIMIT < option[1] < _PRIORITY_LIMIT:
                raise ValueError(f"priority must be within +-{_PRIORITY_LIMIT - 1}")
            if option[6] and not (FLOW_LIMITS.fullmatch(option[7]) and _MODE.fullmatch(option[8])):
                raise ValidationError(f"bad flow {option[7]!r} / mode {option[8]!r}")
        positions: list[list[int]] = []
        calls: list[tuple[list[str], list[Any]]] = []
        subjects: list[NewJob] = []
        for pk, group in self._job_groups([j.job_id for j in jobs]):
            keys = job_script_keys(pk, "enqueue_jobs")
            alike: dict[tuple[Any, ...], list[int]] = {}
            for i in group:  # one call carries jobs with the same name and options
                alike.setdefault(_options(jobs[i]), []).append(i)
            for same in alike.values():
                for start in range(0, len(same), _ENQUEUE_CHUNK):
                    chunk = same[start : start + _ENQUEUE_CHUNK]
                    positions.append(chunk)
                    calls.append((keys, enqueue_args(epoch, policy, [jobs[i] for i in chunk])))
                    subjects.append(jobs[chunk[0]])
        if policy is ExistingJobPolicy.FAIL and len(calls) > 1:
            # one script checks its own partition only: look at every id first, so a refused
            # batch writes nothing anywhere (each script still checks again, atomically)
            for job in jobs:
                state = await self._r.hget(self._job_pk(job.job_id).jq_jobs, f"{job.job_id}|s")
                if state is not None:
                    raise_for_status("enqueue_jobs", [Status.EXISTS, _s(state)], job.job_id)
        generation = self._listener_generation()
        created: dict[str, str] = {}
        replies = await self._eval_many("enqueue_jobs", calls) if calls else []
        out: list[JobState | KeptJob | None] = [None] * len(jobs)
        for chunk, reply, first in zip(positions, replies, subjects, strict=True):
            if reply[0] != Status.OK:
                subject = _s(reply[1]) if len(reply) > 1 else first.job_id
                raise_for_status("enqueue_jobs", [reply[0], *reply[2:]], subject)
            for i, flag in zip(chunk, reply[1], strict=True):
                text = _s(flag)
                if text.startswith("new "):
                    created[jobs[i].job_id] = text[4:]
                elif text.startswith("kept "):
                    out[i] = KeptJob(text[5:])
                else:
                    out[i] = JobState(text)
        self._note_fresh(generation, created)
        return out

    # -- consumer ----------------------------------------------------------------------------
    async def fetch_jobs(
        self,
        worker_id: str,
        *,
        limit: int,
        lock_ms: int,
        wait_ms: int = 0,
        queues: Sequence[str] = ("default",),
        skip_first_try: bool = False,
    ) -> list[JobLease]:
        await self._ready()
        validate_id(worker_id, "worker id", rule=STORED)
        if limit < 1:
            raise ValueError("limit must be >= 1")
        served = list(dict.fromkeys(validate_queue(q) for q in queues))
        if not served:
            raise ValueError("queues must name at least one queue")
        # one blocking wait covers every queue of every partition
        markers = [pk.jq_queue_keys(q)[2] for pk in self._parts for q in served]

        async def attempt() -> list[JobLease]:
            # the queue that goes first turns per call: a busy queue cannot starve the others
            self._job_qrr = (getattr(self, "_job_qrr", -1) + 1) % len(served)
            turn = served[self._job_qrr :] + served[: self._job_qrr]
            return await self._try_fetch_jobs(worker_id, limit, lock_ms, turn)

        leases: list[JobLease] = await self._fetch_waiting(
            markers, wait_ms, attempt, skip_first_try=skip_first_try
        )
        return leases

    async def _try_fetch_jobs(
        self, worker_id: str, limit: int, lock_ms: int, queues: Sequence[str] = ("default",)
    ) -> list[JobLease]:
        epoch = await self._ready()
        out: list[JobLease] = []
        n = len(self._parts)
        # its own round robin: the activity fetch's (self._rr) is left to the activity fetch
        self._job_rr = (getattr(self, "_job_rr", 0) + 1) % n
        nonce = secrets.token_hex(6)
        for offset in range(n):
            if len(out) >= limit:
                break
            pk = self._parts[(self._job_rr + offset) % n]
            reply = await self._eval(
                "fetch_jobs",
                job_script_keys(pk, "fetch_jobs"),
                [epoch, worker_id, nonce, limit - len(out), lock_ms, *queues],
            )
            if reply[0] != Status.OK:
                raise_for_status("fetch_jobs", reply)
            until = int(reply[1])
            token = _s(reply[2])
            flat = reply[3]
            for i in range(0, len(flat), 4):
                _, _, _, name, spec = split_job_data(flat[i + 1])
                out.append(
                    JobLease(
                        job_id=_s(flat[i]),
                        token=token,
                        name=name,
                        spec=spec,
                        delivery=int(flat[i + 2]),
                        attempt=int(flat[i + 3]),
                        lease_until_ms=until,
                    )
                )
        return out

    async def ack_jobs(self, acks: Sequence[JobAck]) -> list[bool]:
        epoch = await self._ready()
        positions: list[list[int]] = []
        calls: list[tuple[list[str], list[Any]]] = []
        for pk, group in self._job_groups([a.lease.job_id for a in acks]):
            keys = job_script_keys(pk, "ack_jobs")
            for start in range(0, len(group), _ACK_CHUNK):
                chunk = group[start : start + _ACK_CHUNK]
                positions.append(chunk)
                calls.append((keys, ack_args(epoch, [acks[i] for i in chunk])))
        replies = await self._eval_many("ack_jobs", calls) if calls else []
        out = [False] * len(acks)
        for chunk, reply in zip(positions, replies, strict=True):
            if reply[0] != Status.OK:
                raise_for_status("ack_jobs", reply)
            for i, code in zip(chunk, reply[1], strict=True):
                out[i] = int(code) == 0
        return out

    async def renew_jobs(
        self, leases: Sequence[JobLease], lock_ms: int, progress: Sequence[bytes | None] = ()
    ) -> list[str]:
        epoch = await self._ready()
        marks = list(progress) + [None] * (len(leases) - len(progress))
        lost: list[str] = []
        for pk, group in self._job_groups([lease.job_id for lease in leases]):
            args: list[Any] = [epoch, lock_ms]
            for i in group:
                args += [leases[i].job_id, leases[i].token, marks[i] or b""]
            reply = await self._eval("renew_jobs", job_script_keys(pk, "renew_jobs"), args)
            if reply[0] != Status.OK:
                raise_for_status("renew_jobs", reply)
            lost += [_s(x) for x in reply[2]]
        return lost

    # -- management --------------------------------------------------------------------------
    async def cancel_job(self, job_id: str, error: bytes) -> JobState:
        epoch = await self._ready()
        validate_id(job_id, "job id", rule=STORED)
        pk = self._job_pk(job_id)
        reply = await self._eval(
            "cancel_job", job_script_keys(pk, "cancel_job"), [epoch, job_id, error]
        )
        if reply[0] != Status.OK:
            raise_for_status("cancel_job", reply, job_id)
        return JobState(_s(reply[1]))

    async def retry_job(self, job_id: str) -> None:
        epoch = await self._ready()
        validate_id(job_id, "job id", rule=STORED)
        pk = self._job_pk(job_id)
        reply = await self._eval("retry_job", job_script_keys(pk, "retry_job"), [epoch, job_id])
        if reply[0] != Status.OK:
            raise_for_status("retry_job", reply, job_id)

    async def get_job(self, job_id: str) -> JobRecord | None:
        await self._ready()
        validate_id(job_id, "job id", rule=STORED)
        pk = self._job_pk(job_id)
        row = await self._r.hmget(pk.jq_jobs, [f"{job_id}|{f}" for f in _FIELDS])
        return _record(job_id, row)

    # -- queues ------------------------------------------------------------------------------
    async def _queue_names(self, pk: PartitionKeys) -> list[str]:
        """ "default" and the other queues of a partition (jq:queues)."""
        named = sorted(_s(q) for q in await self._r.smembers(pk.jq_queues))
        return ["default", *[q for q in named if q != "default"]]

    async def _flow_groups(self, pk: PartitionKeys) -> list[tuple[str, str]]:
        """(queue, flow key) of every live group of a partition (its limits are kept in
        jq:groups while it has jobs queued or running)."""
        out: list[tuple[str, str]] = []
        for field in await self._r.hkeys(pk.jq_groups):
            name = _s(field)
            if name.endswith("|c"):
                out.append(parse_flow_group(name[:-2]))
        return out

    async def _queued_sources(self, pk: PartitionKeys, queues: Sequence[str]) -> list[str]:
        """The ZSETs that hold queued jobs: each queue's ready and delayed sets (the ready
        ones also hold one "\n<key>" entry per group in the round robin, skipped by
        readers) and the groups' ready sets."""
        keys = [key for q in queues for key in pk.jq_queue_keys(q)[:2]]
        return keys + [pk.jq_group(q, k) for q, k in await self._flow_groups(pk)]

    async def _group_entries(self, pk: PartitionKeys) -> int:
        """The groups' round-robin entries in the ready and delayed sets (not jobs)."""
        groups = await self._flow_groups(pk)
        if not groups:
            return 0
        pipe = self._r.pipeline(transaction=False)
        for q, key in groups:
            ready, delayed, _ = pk.jq_queue_keys(q)
            pipe.zscore(ready, "\n" + key)
            pipe.zscore(delayed, "\n" + key)
        return sum(1 for x in await pipe.execute() if x is not None)

    async def set_job_queue_paused(self, queue: str, paused: bool) -> bool:
        """Pause (or resume) ``queue`` in every partition; True if it was paused before."""
        epoch = await self._ready()
        validate_queue(queue)
        was = False
        for pk in self._parts:
            reply = await self._eval(
                "pause_job_queue",
                job_script_keys(pk, "pause_job_queue"),
                [epoch, queue, "1" if paused else "0"],
            )
            if reply[0] != Status.OK:
                raise_for_status("pause_job_queue", reply, queue)
            was = was or int(reply[1]) == 1
        return was

    async def job_queues(self) -> list[JobQueueInfo]:
        """Every job queue known (enqueued to or paused), with its counts and pause state."""
        await self._ready()
        found: dict[str, list[int]] = {}  # queue -> [ready, delayed, paused partitions]
        for pk in self._parts:
            names = await self._queue_names(pk)
            groups = await self._flow_groups(pk)
            pipe = self._r.pipeline(transaction=False)
            for q in names:
                ready, delayed, _ = pk.jq_queue_keys(q)
                pipe.zcard(ready)
                pipe.zcard(delayed)
                pipe.hexists(pk.pmeta, f"qp:{q}")
            for q, key in groups:  # a group's jobs, less its round-robin entry
                ready, delayed, _ = pk.jq_queue_keys(q)
                pipe.zcard(pk.jq_group(q, key))
                pipe.zscore(ready, "\n" + key)
                pipe.zscore(delayed, "\n" + key)
            replies = await pipe.execute()
            for i, q in enumerate(names):
                row = found.setdefault(q, [0, 0, 0])
                row[0] += int(replies[3 * i])
                row[1] += int(replies[3 * i + 1])
                row[2] += 1 if replies[3 * i + 2] else 0
            at = 3 * len(names)
            for j, (q, _) in enumerate(groups):
                size, in_ready, in_delayed = replies[at + 3 * j : at + 3 * j + 3]
                row = found.setdefault(q, [0, 0, 0])
                row[0] += int(size) - (in_ready is not None)
                row[1] -= in_delayed is not None
        return [
            JobQueueInfo(name=q, ready=r, delayed=d, paused=p == len(self._parts))
            for q, (r, d, p) in found.items()
        ]

    async def list_jobs(
        self, *, state: JobState | None = None, name: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        await self._ready()
        if limit < 1:
            raise ValueError("limit must be >= 1")
        out: list[JobRecord] = []
        for pk in self._parts:
            sources: list[str]
            queued = await self._queued_sources(pk, await self._queue_names(pk))
            if state is JobState.QUEUED:
                sources = queued
            elif state is JobState.RUNNING:
                sources = [pk.jq_leases]
            elif state is not None:
                sources = [pk.jq_done]
            else:
                sources = [pk.jq_leases, *queued, pk.jq_done]
            # terminal states share one index: read more of it when filtering
            span = limit if state is None or not state.is_terminal else limit * 4
            snap = self._r.pipeline(transaction=True)  # one snapshot: jobs move between them
            for src in sources:
                snap.zrange(src, 0, span - 1)
            ids = [_s(x) for found in await snap.execute() for x in found]
            pipe = self._r.pipeline(transaction=False)
            for jid in ids:
                pipe.hmget(pk.jq_jobs, [f"{jid}|{f}" for f in _FIELDS])
            rows = await pipe.execute() if ids else []
            for jid, row in zip(ids, rows, strict=True):
                rec = _record(jid, row)
                if rec is None or (state is not None and rec.state is not state):
                    continue
                if name is not None and rec.name != name:
                    continue
                out.append(rec)
        out.sort(key=lambda r: (r.created_at_ms, r.priority_score))
        return out[:limit]

    async def job_counts(self) -> dict[JobState, int]:
        """Jobs per state (terminal ones: those still retained)."""
        await self._ready()
        counts = dict.fromkeys(JobState, 0)
        for pk in self._parts:
            queued = await self._queued_sources(pk, await self._queue_names(pk))
            pipe = self._r.pipeline(transaction=False)
            for key in (*queued, pk.jq_leases, pk.jq_done):
                pipe.zcard(key)
            *waiting, leased, done = await pipe.execute()
            counts[JobState.QUEUED] += sum(int(n) for n in waiting)
            counts[JobState.QUEUED] -= await self._group_entries(pk)
            counts[JobState.RUNNING] += int(leased)
            counts[JobState.COMPLETED] += int(done)  # refined by list_jobs when needed
        return counts

    # -- waiting for a job's or an instance's end (completion channel) ----------------------
    # One pub/sub connection per store, started by the first wait, subscribed to every
    # partition's jq:done channel and to its idx:terminal channel. A jq:done message names the
    # jobs that ended, with their output or error when small; the listener keeps the last
    # _RECENT of them, so a waiter that comes after the message still finds it without a read.
    # Jobs this store enqueued while the listener was up ("fresh") cannot have ended unseen, so
    # their first wait skips the read. An idx:terminal message is one instance id: it ended,
    # was deleted, or a turn recorded an update's reply (commit_turn, delete_instance); its
    # waiters re-read (instance_signals).

    def _jobs_state(self) -> None:
        if not hasattr(self, "_job_waiters"):
            self._job_waiters = {}
            self._instance_waiters: dict[str, list[asyncio.Event]] = {}
            self._job_listener = None
            self._job_recent = OrderedDict()
            self._job_fresh: dict[str, str] = {}
            self._job_generation = 0

    def _listener_generation(self) -> int | None:
        """The listener's generation if it is up (a job created now cannot end unseen)."""
        self._jobs_state()
        task = self._job_listener
        return None if task is None or task.done() else self._job_generation

    def _note_fresh(self, generation: int | None, created: dict[str, str]) -> None:
        if generation is None or generation != self._listener_generation() or len(created) > 64:
            return
        if len(self._job_fresh) > 10_000:
            self._job_fresh.clear()
        self._job_fresh.update(created)

    async def wait_job_ended(self, job_id: str, timeout_s: float) -> JobRecord | None:
        await self._ready()
        validate_id(job_id, "job id", rule=STORED)
        self._jobs_state()
        deadline = time.monotonic() + max(0.0, timeout_s)
        poll = 0.005
        score = self._job_fresh.pop(job_id, None)  # None: not created here, read it first
        read = score is None
        while True:
            fut: asyncio.Future[None] | None = None
            if not self._is_cluster:
                fut = await self._job_waiter(job_id)
            try:
                seen = self._job_recent.get(job_id)
                if seen is not None and seen[0] == score and seen[2] is not None:
                    return _record_from_message(job_id, seen[1], seen[2])
                rec: JobRecord | None = None
                if read or seen is not None:
                    rec = await self.get_job(job_id)
                    if rec is None or rec.state.is_terminal:
                        return rec
                read = True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return rec if rec is not None else await self.get_job(job_id)
                if fut is None:  # cluster: poll (bounded back-off)
                    await asyncio.sleep(min(poll, remaining))
                    poll = min(poll * 1.5, 0.25)
                    continue
                # the re-read after 1 s covers a message lost with a dropped connection
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), min(remaining, 1.0))
            finally:
                if fut is not None:
                    self._drop_waiter(job_id, fut)

    @contextlib.asynccontextmanager
    async def instance_signals(self, instance_id: str) -> AsyncIterator[InstanceSignal]:
        """While open, :meth:`InstanceSignal.wait` returns early when the instance ends, is
        deleted, or records an update's reply. Open it before the read it guards: a signal
        between that read and the wait is kept. ``live`` is False while no signal can come (the
        listener's connection, on a Redis Cluster the doorbell's, is down): the caller polls."""
        await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        self._jobs_state()
        if self._is_cluster:  # the doorbell's sharded connections carry the signals there
            bell = await self._doorbell()
            await bell.watch([pk.idx_terminal for pk in self._parts], self._on_instance_id)
            signal = InstanceSignal(lambda: bell.healthy)
        else:
            await self._start_listener()
            signal = InstanceSignal(lambda: self._listener_generation() is not None)
        self._instance_waiters.setdefault(instance_id, []).append(signal.event)
        try:
            yield signal
        finally:
            events = self._instance_waiters.get(instance_id)
            if events is not None:
                with contextlib.suppress(ValueError):
                    events.remove(signal.event)
                if not events:
                    del self._instance_waiters[instance_id]

    async def _job_waiter(self, job_id: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._job_waiters.setdefault(job_id, []).append(fut)
        await self._start_listener()
        return fut

    async def _start_listener(self) -> None:
        if self._job_listener is None or self._job_listener.done():
            self._job_fresh.clear()  # nothing was seen while no listener ran
            self._job_generation += 1
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._job_listener = asyncio.create_task(self._listen_jobs(ready))
            await asyncio.shield(ready)

    def _drop_waiter(self, job_id: str, fut: asyncio.Future[None]) -> None:
        futs = self._job_waiters.get(job_id)
        if futs is not None:
            with contextlib.suppress(ValueError):
                futs.remove(fut)
            if not futs:
                del self._job_waiters[job_id]

    def _on_jobs_ended(self, message: bytes) -> None:
        recent = self._job_recent
        for job_id, score, state, payload in parse_ended(message):
            recent[job_id] = (score, state, payload)
            recent.move_to_end(job_id)
            for fut in self._job_waiters.get(job_id, ()):
                if not fut.done():
                    fut.set_result(None)
        while len(recent) > _RECENT:
            recent.popitem(last=False)

    def _on_instance_id(self, instance_id: str) -> None:
        for event in self._instance_waiters.get(instance_id, ()):
            event.set()

    async def _listen_jobs(self, ready: asyncio.Future[None]) -> None:
        pubsub = self._r.pubsub()
        instances = {pk.idx_terminal.encode() for pk in self._parts}
        try:
            await pubsub.subscribe(*[pk.jq_done for pk in self._parts], *instances)
            ready.set_result(None)
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if msg is not None and msg.get("type") == "message":
                    if msg["channel"] in instances:
                        self._on_instance_id(msg["data"].decode())
                    else:
                        self._on_jobs_ended(msg["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("completion listener stopped (%s); waiters re-read", exc)
            if not ready.done():
                ready.set_result(None)
            for futs in self._job_waiters.values():
                for fut in futs:
                    if not fut.done():
                        fut.set_result(None)
            for events in self._instance_waiters.values():
                for event in events:
                    event.set()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def close(self) -> None:
        task = getattr(self, "_job_listener", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            self._job_listener = None
        await super().close()
