"""Key layout: every key of a partition starts with ``dr:{<namespace>:p<N>}:``.

The partition hash tag is the first ``{...}`` of every partition key, so every key a script
touches maps to one cluster slot. User ids always come last, after a type prefix, so no id can
change a key's slot or collide with another key (``i:<iid>`` vs ``mz:<iid>``). See
docs/storage.md for the table.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property

from durable_redis.contract import InstanceStatus

__all__ = [
    "STATUS_ORDER",
    "InstanceKeys",
    "PartitionKeys",
    "cluster_slot",
    "id_in_partition",
    "meta_key",
    "partition_of",
]

# Order of the six status index keys wherever a script takes them (see the Lua headers): the
# definition order of the contract's InstanceStatus.
STATUS_ORDER: tuple[str, ...] = tuple(s.value for s in InstanceStatus)


def meta_key(namespace: str) -> str:
    """Namespace metadata HASH (partition count, epoch, schema)."""
    return f"dr:{{{namespace}}}:meta"


def partition_of(instance_id: str, partitions: int) -> int:
    """Stable instance -> partition map (crc32; never Python's salted ``hash``)."""
    if partitions <= 1:
        return 0
    return zlib.crc32(instance_id.encode("utf-8")) % partitions


def id_in_partition(anchor: str, base: str, partitions: int) -> str:
    """``base``, or ``base:k`` with the first k >= 1 that does, hashing to ``anchor``'s
    partition (deterministic: the same base and anchor always give the same id)."""
    want = partition_of(anchor, partitions)
    if partition_of(base, partitions) == want:
        return base
    return next(
        f"{base}:{k}"
        for k in range(1, 1_000_000)
        if partition_of(f"{base}:{k}", partitions) == want
    )


@dataclass(frozen=True, slots=True)
class InstanceKeys:
    """Per-instance keys (all in the instance's partition)."""

    prefix: str
    instance_id: str

    @property
    def record(self) -> str:
        return f"{self.prefix}i:{self.instance_id}"

    @property
    def done(self) -> str:
        return f"{self.prefix}d:{self.instance_id}"

    @property
    def mz(self) -> str:
        return f"{self.prefix}mz:{self.instance_id}"

    @property
    def mh(self) -> str:
        return f"{self.prefix}mh:{self.instance_id}"

    @property
    def work(self) -> str:
        return f"{self.prefix}w:{self.instance_id}"

    @property
    def sessions(self) -> str:
        return f"{self.prefix}s:{self.instance_id}"

    @property
    def children(self) -> str:
        return f"{self.prefix}c:{self.instance_id}"

    def history(self, execution_id: int) -> str:
        return f"{self.prefix}h:{execution_id}:{self.instance_id}"

    @property
    def values(self) -> str:
        """HASH: the instance's key-value state (``ctx.set_value``)."""
        return f"{self.prefix}kv:{self.instance_id}"

    @property
    def replies(self) -> str:
        """HASH: update id -> encoded reply (``client.update``)."""
        return f"{self.prefix}u:{self.instance_id}"

    @property
    def stream(self) -> str:
        """STREAM: the instance's progress stream (``client.stream``)."""
        return f"{self.prefix}st:{self.instance_id}"


class PartitionKeys:
    """Partition-level keys of partition ``index`` of ``namespace``."""

    def __init__(self, namespace: str, index: int) -> None:
        self.namespace = namespace
        self.index = index
        self.prefix = f"dr:{{{namespace}:p{index}}}:"

    def instance(self, instance_id: str) -> InstanceKeys:
        return InstanceKeys(self.prefix, instance_id)

    def _k(self, name: str) -> str:
        return self.prefix + name

    @cached_property
    def pmeta(self) -> str:
        return self._k("pmeta")

    @cached_property
    def seq(self) -> str:
        return self._k("seq")

    @cached_property
    def oq_ready(self) -> str:
        return self._k("oq:ready")

    @cached_property
    def oq_flow(self) -> str:
        """HASH of the flow keys of orchestration starts ("<key>|s" singleton holder, "|d"
        debounced pending instance, "|h" throttle window "<iid> <end ms>")."""
        return self._k("oq:flow")

    @cached_property
    def oq_locks(self) -> str:
        return self._k("oq:locks")

    @cached_property
    def oq_lock(self) -> str:
        return self._k("oq:lock")

    @cached_property
    def oq_marker(self) -> str:
        return self._k("oq:marker")

    @cached_property
    def idx_created(self) -> str:
        return self._k("idx:created")

    @cached_property
    def idx_terminal(self) -> str:
        return self._k("idx:terminal")

    def idx_status(self, status: str) -> str:
        return self._k(f"idx:st:{status}")

    @cached_property
    def idx_statuses(self) -> list[str]:
        return [self.idx_status(s) for s in STATUS_ORDER]

    @cached_property
    def wq_items(self) -> str:
        return self._k("wq:items")

    @cached_property
    def wq_ready(self) -> str:
        return self._k("wq:ready")

    @cached_property
    def wq_sready(self) -> str:
        return self._k("wq:sready")

    @cached_property
    def wq_delayed(self) -> str:
        return self._k("wq:delayed")

    @cached_property
    def wq_leases(self) -> str:
        return self._k("wq:leases")

    @cached_property
    def wq_marker(self) -> str:
        return self._k("wq:marker")

    @cached_property
    def wq_smarker(self) -> str:
        return self._k("wq:smarker")

    @cached_property
    def sess(self) -> str:
        return self._k("sess")

    @cached_property
    def outbox(self) -> str:
        """Cross-partition messages waiting for delivery (ZSET entry -> seq)."""
        return self._k("ob")

    @cached_property
    def outbox_data(self) -> str:
        return self._k("ob:d")

    @cached_property
    def inbox(self) -> str:
        """Tombstones of applied cross-partition messages (ZSET entry -> expiry)."""
        return self._k("ib")

    # -- jobs (lua/includes/jobs.lua describes the fields of jq:jobs) --------------------------
    @cached_property
    def jq_jobs(self) -> str:
        return self._k("jq:jobs")

    @cached_property
    def jq_ready(self) -> str:
        return self._k("jq:ready")

    @cached_property
    def jq_delayed(self) -> str:
        return self._k("jq:delayed")

    @cached_property
    def jq_leases(self) -> str:
        return self._k("jq:leases")

    @cached_property
    def jq_marker(self) -> str:
        return self._k("jq:marker")

    @cached_property
    def jq_queues(self) -> str:
        """SET of the queues other than "default" that jobs were enqueued to or paused in."""
        return self._k("jq:queues")

    @cached_property
    def jq_groups(self) -> str:
        """HASH of the flow-key groups' state ("<queue>:<key>|c" limits, "|n" running, ...)."""
        return self._k("jq:groups")

    @cached_property
    def wq_groups(self) -> str:
        """HASH of the activity work items' flow-key groups (as ``jq_groups``, for items)."""
        return self._k("wq:groups")

    def wq_group(self, queue: str, key: str) -> str:
        """ZSET of the ready work items of flow key ``key`` in ``queue`` (``flow_keys``)."""
        return self._k(f"wq:g:{queue}:{key}")

    def jq_group(self, queue: str, key: str) -> str:
        """ZSET of the ready jobs of flow key ``key`` in ``queue`` (``flow_keys`` in Lua)."""
        return self._k(f"jq:g:{queue}:{key}")

    def jq_queue_keys(self, queue: str) -> tuple[str, str, str]:
        """(ready, delayed, marker) of a job queue; "default" keeps jq:ready / jq:delayed /
        jq:marker (``job_qkeys`` in lua/includes/jobs.lua names them alike)."""
        if queue == "default":
            return self.jq_ready, self.jq_delayed, self.jq_marker
        base = self._k(f"jq:q:{queue}:")
        return base + "ready", base + "delayed", base + "marker"

    @cached_property
    def jq_done(self) -> str:
        """Terminal jobs -> expiry of their result; also the name of the completion channel."""
        return self._k("jq:done")

    @cached_property
    def sc_defs(self) -> str:
        """Schedules: ``<name>|s`` spec, ``|h`` spec hash, ``|n`` next due, ``|p`` paused,
        ``|j`` last job id."""
        return self._k("sc:defs")

    @cached_property
    def sc_due(self) -> str:
        return self._k("sc:due")

    def wq_queue_keys(self, queue: str) -> tuple[str, str, str, str]:
        """(ready, sready, marker, smarker) of an activity queue; "default" keeps wq:ready /
        wq:sready / wq:marker / wq:smarker (``wq_qkeys`` in lua/includes/common.lua names them
        alike). Delayed items and leases of every queue share wq:delayed / wq:leases."""
        if queue == "default":
            return self.wq_ready, self.wq_sready, self.wq_marker, self.wq_smarker
        base = self._k(f"wq:q:{queue}:")
        return base + "ready", base + "sready", base + "marker", base + "smarker"

    def wq_wake(self, worker_id: str) -> str:
        """Per-worker wake-up marker: session work for a session this worker owns."""
        return self._k(f"wake:{worker_id}")


# -- cluster slot (CRC16/XMODEM of the hash tag), as Redis Cluster computes it ----------------


def _crc16_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ b) & 0xFF]
    return crc


def cluster_slot(key: str | bytes) -> int:
    """The Redis Cluster slot of ``key`` (hash tag rules of the cluster spec)."""
    raw = key.encode("utf-8") if isinstance(key, str) else key
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end != -1 and end != start + 1:
            raw = raw[start + 1 : end]
    return _crc16(raw) % 16384
