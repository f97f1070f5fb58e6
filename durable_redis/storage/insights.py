"""Read-only views over a ``RedisStore`` for operators (the dashboard, ``doctor``).

Everything here reads the partition keys the store already keeps (docs/storage.md) with a
bounded number of commands per partition; nothing SCANs the keyspace. Times are server-clock ms.

- :func:`partition_overview`: per partition, status counts, queue depths and the age of the
  oldest waiting item (orchestration message and activity), and instances finished recently;
- :func:`instance_sessions`: an instance's open sessions and their owners;
- :func:`open_sessions`: open sessions of the namespace (bounded);
- :func:`search_ids`: instance ids by prefix (exact id first, then ZSCAN of the created index);
- :func:`job_overview`: background jobs ready, delayed, running and finished, and the finished
  ones by state while few enough are retained to read their states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from durable_redis.ids import (
    STORED,
    parse_activity_key,
    parse_work_item_id,
    session_key,
    validate_id,
)
from durable_redis.storage._replies import _s
from durable_redis.storage.activities import routed_ready_counts
from durable_redis.storage.keys import STATUS_ORDER, PartitionKeys
from durable_redis.storage.redis_base import RedisStoreBase

__all__ = [
    "JobOverview",
    "PartitionOverview",
    "SessionView",
    "instance_sessions",
    "job_overview",
    "open_sessions",
    "partition_overview",
    "search_ids",
]


@dataclass(frozen=True, slots=True)
class PartitionOverview:
    partition: int
    counts: dict[str, int]
    ready_instances: int  # instances with a message visible now
    timers: int  # instances whose earliest message is in the future (timers, delays)
    locked_instances: int
    work_ready: int
    session_work_ready: int
    work_delayed: int
    work_leased: int
    sessions_open: int
    oldest_message_age_ms: int | None  # oldest visible orchestration message, waiting
    oldest_work_age_ms: int | None  # the heads of the "default" activity queue, since scheduled
    finished: dict[str, int] = field(default_factory=dict)  # "1m"/"5m"/"15m" -> terminal


@dataclass(frozen=True, slots=True)
class SessionView:
    instance_id: str
    session_id: str
    owner: str  # "" = unowned
    lease_until_ms: int | None
    last_activity_ms: int | None


_WINDOWS = {"1m": 60_000, "5m": 300_000, "15m": 900_000}


async def partition_overview(store: RedisStoreBase) -> list[PartitionOverview]:
    """One :class:`PartitionOverview` per partition: two pipelines and a few lookups each."""
    await store._ready()
    r: Any = store._r
    now = await store.server_time_ms()
    out = []
    for pk in store._parts:
        pipe = r.pipeline(transaction=False)
        for status in STATUS_ORDER:
            pipe.zcard(pk.idx_status(status))
        pipe.zcount(pk.oq_ready, "-inf", now)
        pipe.zcount(pk.oq_ready, f"({now}", "+inf")
        pipe.zcard(pk.oq_locks)
        for key in (pk.wq_ready, pk.wq_sready, pk.wq_delayed, pk.wq_leases):
            pipe.zcard(key)
        pipe.hlen(pk.sess)
        pipe.zrangebyscore(pk.oq_ready, "-inf", now, start=0, num=1, withscores=True)
        pipe.zrange(pk.wq_ready, 0, 0)
        pipe.zrange(pk.wq_sready, 0, 0)
        for ms in _WINDOWS.values():
            pipe.zcount(pk.idx_terminal, now - ms, "+inf")
        rows = await pipe.execute()
        counts = {s: int(n) for s, n in zip(STATUS_ORDER, rows[:6], strict=True)}
        ready, timers, locked, w, sw, d, le, sess, oldest, head, shead = rows[6:17]
        finished = {k: int(n) for k, n in zip(_WINDOWS, rows[17:], strict=True)}
        oldest_msg = now - int(oldest[0][1]) if oldest else None
        ages = [await _work_age(store, pk, _s(h[0]), now) for h in (head, shead) if h]
        known = [a for a in ages if a is not None]
        oldest_work = max(known) if known else None
        routed, routed_sessions = await routed_ready_counts(store._r, pk)  # docs/routing.md
        out.append(
            PartitionOverview(
                partition=pk.index,
                counts=counts,
                ready_instances=int(ready),
                timers=int(timers),
                locked_instances=int(locked),
                work_ready=int(w) + routed,
                session_work_ready=int(sw) + routed_sessions,
                work_delayed=int(d),
                work_leased=int(le),
                sessions_open=int(sess) // 3,  # a session is 3 fields: |o owner, |u, |l
                oldest_message_age_ms=None if oldest_msg is None else max(0, oldest_msg),
                oldest_work_age_ms=oldest_work,
                finished=finished,
            )
        )
    return out


async def _work_age(store: RedisStoreBase, pk: PartitionKeys, item: str, now: int) -> int | None:
    """Age of a work item: now minus its ``ActivityScheduled`` event's time (history index =
    event id - 1; anything unexpected gives None)."""
    from durable_redis.core import decode_event

    parts = parse_work_item_id(item)
    key = parse_activity_key(parts[1]) if parts is not None else None
    if parts is None or key is None:
        return None
    iid, (execution, activity) = parts[0], key
    raw = await store._r.lindex(pk.instance(iid).history(execution), activity - 1)
    if raw is None:
        return None
    try:
        event = decode_event(raw)
    except Exception:
        return None
    if getattr(event, "event_id", None) != activity:
        return None
    return max(0, now - int(event.timestamp_ms))


async def instance_sessions(store: RedisStoreBase, instance_id: str) -> list[SessionView]:
    await store._ready()
    validate_id(instance_id, "instance id", rule=STORED)
    pk = store._pk(instance_id)
    ids = sorted(_s(m) for m in await store._r.smembers(pk.instance(instance_id).sessions))
    if not ids:
        return []
    fields = []
    for sid in ids:
        k = session_key(instance_id, sid)
        fields += [f"{k}|o", f"{k}|u", f"{k}|l"]
    values = await store._r.hmget(pk.sess, fields)
    return [
        SessionView(
            instance_id,
            sid,
            _s(values[3 * i]) if values[3 * i] is not None else "",
            _int(values[3 * i + 1]),
            _int(values[3 * i + 2]),
        )
        for i, sid in enumerate(ids)
    ]


async def open_sessions(store: RedisStoreBase, *, limit: int = 500) -> list[SessionView]:
    """Open sessions of every partition, at most ``limit`` (HSCAN, bounded)."""
    await store._ready()
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for pk in store._parts:
        cursor = 0
        while True:
            cursor, chunk = await store._r.hscan(pk.sess, cursor, count=500)
            for k, v in chunk.items():
                key, _, part = _s(k).rpartition("|")
                iid, _, sid = key.partition("\n")
                if iid and sid:  # not a purge tombstone (activities.purge_work)
                    found.setdefault((iid, sid), {})[part] = v
            if cursor == 0 or len(found) >= limit:
                break
    views = [
        SessionView(iid, sid, _s(f.get("o", b"")), _int(f.get("u")), _int(f.get("l")))
        for (iid, sid), f in found.items()
    ]
    views.sort(key=lambda s: (s.instance_id, s.session_id))
    return views[:limit]


async def search_ids(store: RedisStoreBase, prefix: str, *, limit: int = 50) -> list[str]:
    """Instance ids starting with ``prefix``: the exact id if it exists, then a ZSCAN MATCH of
    each partition's created index (the index only; O(instances / 1,000) round trips)."""
    await store._ready()
    validate_id(prefix, "instance id prefix", rule=STORED)
    found: list[str] = []
    if await store._r.exists(store._pk(prefix).instance(prefix).record):
        found.append(prefix)
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    for pk in store._parts:
        cursor = 0
        while len(found) < limit:
            cursor, rows = await store._r.zscan(pk.idx_created, cursor, match=pattern, count=1000)
            for member, _score in rows:
                iid = _s(member)
                if iid not in found:
                    found.append(iid)
            if cursor == 0:
                break
    return sorted(found[:limit])


@dataclass(frozen=True, slots=True)
class JobOverview:
    ready: int  # queued and visible now
    delayed: int  # queued for later: a delay, an ``at``, a retry's back-off
    running: int
    finished: int  # terminal, result still retained
    # completed / failed / cancelled; None when more than the limit are retained (not read)
    finished_by_state: dict[str, int] | None


async def job_overview(store: RedisStoreBase, *, split_limit: int = 2000) -> JobOverview:
    """Two ZCARDs per queue and two more per partition; then, if at most ``split_limit`` jobs
    are retained in all, one more pipeline per partition reading their states (the finished
    index holds all three). Every queue counts (docs/routing.md)."""
    await store._ready()
    r: Any = store._r
    sizes = []
    for pk in store._parts:
        queues = ["default", *sorted(q for q in map(_s, await r.smembers(pk.jq_queues)))]
        pipe = r.pipeline(transaction=False)
        for q in queues:
            ready_key, delayed_key, _ = pk.jq_queue_keys(q)
            pipe.zcard(ready_key)
            pipe.zcard(delayed_key)
        pipe.zcard(pk.jq_leases)
        pipe.zcard(pk.jq_done)
        *waiting, leased, done = [int(n) for n in await pipe.execute()]
        sizes.append([sum(waiting[0::2]), sum(waiting[1::2]), leased, done])
    ready, delayed, running, finished = (sum(col) for col in zip(*sizes, strict=True))
    job_queues = getattr(store, "job_queues", None)
    if job_queues is not None and any([await r.exists(pk.jq_groups) for pk in store._parts]):
        # keyed jobs wait in their groups' sets (docs/routing.md "Flow control"): count them
        infos = await job_queues()
        ready, delayed = sum(q.ready for q in infos), sum(q.delayed for q in infos)
    by_state: dict[str, int] | None = None
    if finished <= split_limit:
        by_state = {"completed": 0, "failed": 0, "cancelled": 0}
        for pk, size in zip(store._parts, sizes, strict=True):
            if not size[3]:
                continue
            ids = [_s(x) for x in await r.zrange(pk.jq_done, 0, split_limit - 1)]
            states = await r.hmget(pk.jq_jobs, [f"{i}|s" for i in ids]) if ids else []
            for state in states:  # None: expired between the two reads
                if state is not None and _s(state) in by_state:
                    by_state[_s(state)] += 1
    return JobOverview(ready, delayed, running, finished, by_state)


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
