"""Packing a turn's commit into ``commit_turn.lua``'s KEYS and ARGV: pure, no Redis.

``pack_commit(pk, lease, commit, ...) -> PackedCommit`` builds both lists in the order of two
named tables (``COMMIT_TURN_KEYS``, ``COMMIT_TURN_ARGV``): slot ``i`` holds what the Lua header
names slot ``i``, and the script reads each slot once, under that name, at its top (``local
K_inst = KEYS[7]``). ``tests/storage/test_packing.py`` pins the tables to the header and to the
``local`` lines, and each named slot to the key it must carry (written out independently), so a
swapped key fails a test instead of corrupting data. (The lists are written slot by slot rather
than looked up by name: this runs once per turn, and a dict per call cost 10 us.)

The layout (the Lua header is the reference):

- KEYS: the fixed, named keys; then 5 keys per *target group* (every other instance of this
  partition a message goes to: inst, done, mz, mh, the children SET of its parent); then the
  wake key of each session owner named in ARGV.
- ARGV: the fixed, named arguments; then length-prefixed sections: events, work items,
  cancelled items, sessions opened, sessions closed, messages, wake owners (``n_wake`` of them,
  no prefix), values, update replies (+ their TTL), stream items (+ MAXLEN and TTL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from durable_redis.contract import InstanceStatus, TurnCommit
from durable_redis.errors import ValidationError
from durable_redis.ids import STORED, session_key, validate_id, work_item_id
from durable_redis.storage._replies import _opt
from durable_redis.storage.base import OrchestrationLease, WorkTake
from durable_redis.storage.job_types import FLOW_LIMITS
from durable_redis.storage.keys import STATUS_ORDER, PartitionKeys, partition_of

# A terminal instance with more work items than this is purged in batches (lua/purge_work.lua);
# the Lua side's PURGE_BATCH (lua/includes/common.lua) is the same number.
PURGE_BATCH = 1000

__all__ = [
    "COMMIT_TURN_ARGV",
    "COMMIT_TURN_KEYS",
    "GROUP_KEYS",
    "PURGE_BATCH",
    "REPLY_TTL_MS",
    "STREAM_MAXLEN",
    "STREAM_TTL_MS",
    "PackedCommit",
    "messaging_args",
    "pack_commit",
    "session_owner_fields",
    "work_route_arg",
]

REPLY_TTL_MS = 24 * 3600 * 1000
"""Update replies are kept this long after the instance's last reply (then a retried update
id is applied again only if the execution that received it has ended)."""
STREAM_MAXLEN = 10_000
"""Entries a progress stream keeps (``XADD MAXLEN ~``: about this many, oldest trimmed)."""
STREAM_TTL_MS = 7 * 24 * 3600 * 1000
"""A progress stream expires this long after its last append (and goes with its instance)."""

COMMIT_TURN_KEYS: tuple[str, ...] = (
    "pmeta",
    "seq",
    "oq_lock",
    "oq_locks",
    "oq_ready",
    "oq_marker",
    "inst",
    "done",
    "mz",
    "mh",
    "hist",
    "idx_created",
    "idx_terminal",
    *(f"idx_{s}" for s in STATUS_ORDER),
    "witems",
    "sset",
    "children",
    "wq_items",
    "wq_ready",
    "wq_sready",
    "wq_delayed",
    "wq_leases",
    "wq_marker",
    "wq_smarker",
    "sess",
    "outbox",
    "outbox_data",
    "values",
    "replies",
    "stream",
)
"""The fixed KEYS of commit_turn, by their names in its header, in slot order."""

GROUP_KEYS: tuple[str, ...] = ("inst", "done", "mz", "mh", "children")
"""The keys of one target group (after the fixed KEYS, in this order)."""

COMMIT_TURN_ARGV: tuple[str, ...] = (
    "epoch",
    "iid",
    "token",
    "execution_id",
    "expected_history_len",
    "status",
    "name_set",
    "name",
    "version_set",
    "version",
    "input_set",
    "input",
    "output_set",
    "output",
    "error_set",
    "error",
    "custom_set",
    "custom",
    "n_groups",
    "n_wake",
    "take_worker",
    "take_nonce",
    "take_limit",
    "take_lock_ms",
    "claim_nonce",
    "claim_lock_ms",
)
"""The fixed ARGV of commit_turn, by their names in its header, in slot order."""


class PackedCommit(NamedTuple):
    keys: list[str]
    args: list[Any]
    outbox: bool  # a message goes to another partition: deliver the outbox after the call


def session_owner_fields(instance_id: str, commit: TurnCommit) -> list[str]:
    """Fields of the partition's session HASH holding the owners of the sessions that get new
    work or are purged by ``commit`` (read before packing: their wake keys go into KEYS; the
    owner is re-checked in Lua, so this is a hint)."""
    session_ids = sorted(
        {w.session_id for w in commit.work_items if w.session_id} | set(commit.sessions_closed)
    )
    for sid in session_ids:
        validate_id(sid, "session id", rule=STORED)
    return [session_key(instance_id, sid) + "|o" for sid in session_ids]


def work_route_arg(
    visible_at_ms: int | None,
    queue: str | None,
    priority: int,
    flow_key: str | None = None,
    flow: str | None = None,
) -> str:
    """commit_turn's visible_at field of a work item: "<ms>" as before for the default queue,
    priority 0 and no flow key, else "<ms>;<queue>;<priority>", and ";<flow> <key>" after it
    for a keyed call (the item's g field; docs/routing.md)."""
    vis = _opt(visible_at_ms)
    if flow_key is not None:
        validate_id(flow_key, "flow key", rule=STORED)
        if flow is None or not FLOW_LIMITS.fullmatch(flow):
            raise ValidationError(f"bad flow limits {flow!r} of flow key {flow_key!r}")
        return f"{vis};{queue or 'default'};{priority or ''};{flow} {flow_key}"
    if (queue is None or queue == "default") and not priority:
        return vis
    return f"{vis};{queue or 'default'};{priority or ''}"


def pack_commit(
    pk: PartitionKeys,
    lease: OrchestrationLease,
    commit: TurnCommit,
    *,
    epoch: str,
    partitions: int,
    wake_owners: Sequence[str] = (),
    take: WorkTake | None = None,
    take_nonce: str = "",
    claim_nonce: str = "",
    claim_lock_ms: int = 0,
) -> PackedCommit:
    """KEYS and ARGV of ``commit_turn`` for ``commit`` of ``lease`` in partition ``pk`` (one of
    ``partitions``). ``wake_owners``: the owners read at ``session_owner_fields``. A
    ``claim_nonce`` asks the script to claim the partition's next instance for ``claim_lock_ms``.

    Raises InvalidIdError for a bad id, NotImplementedError for a child whose parent lives in
    another partition than the committing instance (see docs/storage.md "Cluster").
    """
    iid = lease.instance_id
    ik = pk.instance(iid)
    groups: dict[str, int] = {}  # target instance -> group number (1-based)
    group_keys: list[str] = []
    msg_args: list[Any] = []
    outbox = False
    for m in commit.messages:
        validate_id(m.instance_id, "instance id", rule=STORED)
        validate_id(m.message_id, "message id", rule=STORED)
        c = m.create
        parent = c.parent_instance_id if c else None
        if parent:
            validate_id(parent, "parent instance id", rule=STORED)
        g = 0  # this instance
        if partition_of(m.instance_id, partitions) != pk.index:
            g = -1  # another partition: the outbox, delivered after the commit
            outbox = True
        elif m.instance_id != iid:
            if m.instance_id not in groups:
                groups[m.instance_id] = len(groups) + 1
                if parent and partition_of(parent, partitions) != pk.index:
                    raise NotImplementedError(
                        f"a child's parent crosses partitions ({parent!r}): a child created in "
                        "the committing instance's partition must have its parent there too"
                    )
                tk = pk.instance(m.instance_id)
                pc = pk.instance(parent).children if parent else tk.children
                group_keys += [tk.record, tk.done, tk.mz, tk.mh, pc]
            g = groups[m.instance_id]
        msg_args += [
            g,
            m.instance_id,
            m.message_id,
            m.data,
            _opt(m.visible_at_ms),
            "1" if c else "0",
            c.name if c else "",
            c.version if c else "",
            (c.parent_instance_id or "") if c else "",
            "1" if c and c.input is not None else "0",
            (c.input or b"") if c else b"",
        ]

    # in COMMIT_TURN_KEYS order, slot by slot (test_packing pins each slot to its name)
    keys = [
        pk.pmeta,
        pk.seq,
        pk.oq_lock,
        pk.oq_locks,
        pk.oq_ready,
        pk.oq_marker,
        ik.record,  # inst
        ik.done,
        ik.mz,
        ik.mh,
        ik.history(commit.execution_id),  # hist
        pk.idx_created,
        pk.idx_terminal,
        *pk.idx_statuses,  # idx_<status>, in STATUS_ORDER
        ik.work,  # witems
        ik.sessions,  # sset
        ik.children,
        pk.wq_items,
        pk.wq_ready,
        pk.wq_sready,
        pk.wq_delayed,
        pk.wq_leases,
        pk.wq_marker,
        pk.wq_smarker,
        pk.sess,
        pk.outbox,
        pk.outbox_data,
        ik.values,
        ik.replies,
        ik.stream,
        *group_keys,
    ]
    for owner in wake_owners:
        keys.append(pk.wq_wake(owner))

    # in COMMIT_TURN_ARGV order; *_set flags: "1" set, "0" leave, "2" clear
    custom = commit.custom_status
    args: list[Any] = [
        epoch,
        iid,
        lease.token,
        commit.execution_id,
        commit.expected_history_len,
        InstanceStatus(commit.status).value,
        "0" if commit.name is None else "1",
        commit.name or "",
        "0" if commit.version is None else "1",
        commit.version or "",
        "0" if commit.input is None else "1",
        commit.input or b"",
        "2" if commit.output is None else "1",
        commit.output or b"",
        "2" if commit.error is None else "1",
        commit.error or b"",
        ("2" if custom is None else "1") if commit.set_custom_status else "0",
        custom or b"",
        len(groups),  # n_groups
        len(wake_owners),  # n_wake
        take.worker_id if take is not None and take.limit >= 1 else "",  # take_worker
        take_nonce if take is not None else "",
        take.limit if take is not None else 0,
        take.lock_ms if take is not None else 0,
        claim_nonce,
        claim_lock_ms if claim_nonce else 0,
    ]
    args.append(len(commit.events))
    args += commit.events
    args.append(len(commit.work_items))
    for w in commit.work_items:
        validate_id(w.activity_key, "activity key", rule=STORED)
        args += [
            work_item_id(iid, w.activity_key),
            w.activity_key,
            w.session_id or "",
            work_route_arg(w.visible_at_ms, w.queue, w.priority, w.flow_key, w.flow),
            w.data,
        ]
    # a terminal commit deletes every work item of the instance itself (over PURGE_BATCH: under
    # a tombstone, then purge_work): a long list of cancelled work is left out
    cancelled = commit.cancelled_work
    if len(cancelled) > PURGE_BATCH and InstanceStatus(commit.status).is_terminal:
        cancelled = ()
    args.append(len(cancelled))
    args += [work_item_id(iid, k) for k in cancelled]
    for sessions in (commit.sessions_opened, commit.sessions_closed):
        for sid in sessions:
            validate_id(sid, "session id", rule=STORED)
        args.append(len(sessions))
        args += sessions
    args.append(len(commit.messages))
    args += msg_args
    args += wake_owners
    args += messaging_args(commit)
    return PackedCommit(keys, args, outbox)


def messaging_args(commit: TurnCommit) -> list[Any]:
    """commit_turn's last ARGV sections: values, replies and stream items (see its header)."""
    args: list[Any] = [len(commit.values)]
    for key, value in commit.values:
        args += [key, "2" if value is None else "1", value or b""]
    args.append(len(commit.update_replies))
    for update_id, reply in commit.update_replies:
        args += [update_id, reply]
    args.append(REPLY_TTL_MS)
    args.append(len(commit.stream_items))
    args += commit.stream_items
    args += [STREAM_MAXLEN, STREAM_TTL_MS]
    return args
