"""The store's invariants, checked on a quiet namespace (a reusable helper of the fault tests).

``store_invariants(url, namespace)`` reads every partition of the namespace (plain reads, test
only) and returns the violations it finds, empty when none:

- every work item is whole (data, instance, key, session, attempts, seq) and in exactly one of
  ready / session-ready / delayed / leased, leased iff it has a token and a worker, and listed
  in its instance's work SET; every queue member and every work SET member is an item (items of
  an instance under a purge tombstone are exempt: they are dead and on their way out);
- every instance record is whole (name, status, exec, created) and in exactly one status index,
  the index of its status, and in the created index;
- every instance lock is live or released: the lock token HASH and the lock deadline ZSET name
  the same instances, a locked instance is not also in the ready ZSET, and it exists;
- every open session's record belongs to an existing instance that lists it as open;
- a keyed work item (flow control) waits in its group's ZSET rather than a ready one, every
  round-robin entry names a group with state, and a group's running count is the number of its
  leased items.

It is what "no partial write" means: a script that stopped half way (a refused write after
others) leaves one of these broken.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import redis

from durable_redis.storage.keys import STATUS_ORDER, PartitionKeys, meta_key

ITEM_FIELDS = ("d", "i", "k", "s", "a", "n")
INSTANCE_FIELDS = ("name", "status", "exec", "created")


def _s(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _client(url: str) -> Any:
    if url.startswith("redis+cluster://"):  # plain reads routed by key; SCAN on every primary
        return redis.RedisCluster.from_url(url.replace("redis+cluster://", "redis://", 1))
    return redis.Redis.from_url(url)


def store_invariants(url: str, namespace: str) -> list[str]:
    r = _client(url)
    try:
        partitions = int(_s(r.hget(meta_key(namespace), "partitions") or b"1"))
        problems: list[str] = []
        for index in range(partitions):
            problems += _partition(r, PartitionKeys(namespace, index))
        return problems
    finally:
        r.close()


def _partition(r: Any, pk: PartitionKeys) -> list[str]:
    bad: list[str] = []
    sess = {_s(k): _s(v) for k, v in r.hgetall(pk.sess).items()}
    tombstoned = {k[: -len("\n|p")] for k in sess if k.endswith("\n|p") and k != "\n|p"}
    # work items ------------------------------------------------------------------------------
    fields: dict[str, dict[str, str]] = defaultdict(dict)
    for k, v in r.hgetall(pk.wq_items).items():
        item, _, name = _s(k).rpartition("|")
        fields[item][name] = _s(v)
    queue_keys = [("delayed", pk.wq_delayed), ("leases", pk.wq_leases)]
    for q in ["default", *sorted(_s(x) for x in r.smembers(pk.jq_queues))]:
        ready, sready, _, _ = pk.wq_queue_keys(q)  # per activity queue (docs/routing.md)
        queue_keys += [(f"ready[{q}]", ready), (f"sready[{q}]", sready)]
    # a keyed item (flow control, docs/routing.md) waits in its group's ZSET instead
    groups = [_s(f)[:-2] for f in r.hkeys(pk.wq_groups) if _s(f).endswith("|c")]
    for group in groups:
        q, _, key = group.partition(":")
        queue_keys.append((f"group[{group}]", pk.wq_group(q, key)))
    queues = {name: {_s(m) for m in r.zrange(key, 0, -1)} for name, key in queue_keys}
    for name, members in queues.items():  # a group's round-robin entry is no item
        entries = {m for m in members if m.startswith("\n")}
        members -= entries
        for entry in entries:
            q = name[6:-1] if name.startswith("ready[") else entry.split("\n")[1]
            key = entry[1:] if name.startswith("ready[") else entry.split("\n", 2)[2]
            if f"{q}:{key}" not in groups:
                bad.append(f"{name} has an entry of group {q}:{key}, which has no state")
    for item, f in fields.items():
        iid = f.get("i", "")
        if iid in tombstoned:
            continue
        missing = [x for x in ITEM_FIELDS if x not in f]
        if missing:
            bad.append(f"item {item!r} lacks {missing}")
        where = [name for name, members in queues.items() if item in members]
        if len(where) != 1:
            bad.append(f"item {item!r} is in {where or 'no queue'}")
        leased = "leases" in where
        if leased != ("t" in f and "w" in f):
            bad.append(f"item {item!r}: leased={leased} but token/worker {('t' in f, 'w' in f)}")
        if iid and not r.sismember(pk.instance(iid).work, item):
            bad.append(f"item {item!r} not in the work SET of {iid!r}")
    running: dict[str, int] = defaultdict(int)  # a keyed item's slot is held by its lease
    for item, f in fields.items():
        if "g" in f and item in queues["leases"]:
            running[f"{f.get('q', 'default')}:{f['g'].split(' ', 4)[4]}"] += 1
    for group in {*groups, *running}:
        counted = int(_s(r.hget(pk.wq_groups, f"{group}|n") or b"0"))
        if counted != running[group]:
            bad.append(f"group {group!r} counts {counted} running, {running[group]} are leased")
    for name, members in queues.items():
        for item in members - fields.keys():
            bad.append(f"{name} names {item!r}, which is no item")
    # instances -------------------------------------------------------------------------------
    status_members = {
        status: {_s(m) for m in r.zrange(pk.idx_status(status), 0, -1)} for status in STATUS_ORDER
    }
    created = {_s(m) for m in r.zrange(pk.idx_created, 0, -1)}
    records: dict[str, dict[str, Any]] = {}
    for key in r.scan_iter(match=pk.prefix.replace("[", "\\[") + "i:*", count=1000):
        iid = _s(key)[len(pk.prefix) + 2 :]
        records[iid] = {_s(k): _s(v) for k, v in r.hgetall(key).items()}
    for iid, rec in records.items():
        missing = [x for x in INSTANCE_FIELDS if x not in rec]
        if missing:
            bad.append(f"instance {iid!r} lacks {missing}")
        indexed = [s for s, members in status_members.items() if iid in members]
        if indexed != [rec.get("status")]:
            bad.append(f"instance {iid!r} has status {rec.get('status')!r}, indexed as {indexed}")
        if iid not in created:
            bad.append(f"instance {iid!r} missing from the created index")
        for member in r.smembers(pk.instance(iid).work):
            if _s(member) not in fields and iid not in tombstoned:
                bad.append(f"work SET of {iid!r} names {_s(member)!r}, which is no item")
    for status, members in status_members.items():
        for iid in members - records.keys():
            bad.append(f"index {status} names {iid!r}, which does not exist")
    # instance locks --------------------------------------------------------------------------
    tokens = {_s(k) for k in r.hkeys(pk.oq_lock)}
    deadlines = {_s(m) for m in r.zrange(pk.oq_locks, 0, -1)}
    ready = {_s(m) for m in r.zrange(pk.oq_ready, 0, -1)}
    if tokens != deadlines:
        only_t, only_d = tokens - deadlines, deadlines - tokens
        bad.append(f"half locks: tokens only {only_t}, deadlines only {only_d}")
    for iid in tokens & ready:
        bad.append(f"instance {iid!r} is locked and ready at once")
    for iid in tokens - records.keys():
        bad.append(f"lock on {iid!r}, which does not exist")
    # sessions --------------------------------------------------------------------------------
    for k in sess:
        key, _, part = k.rpartition("|")
        iid, _, sid = key.partition("\n")
        if not iid or not sid or part != "o":
            continue
        if iid not in records:
            bad.append(f"session {sid!r} of {iid!r}, which does not exist")
        elif not r.sismember(pk.instance(iid).sessions, sid):
            bad.append(f"session {sid!r} of {iid!r} has a record but is not open")
    return bad
