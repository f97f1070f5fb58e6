"""``RedisStore``: the Store contract on Redis, one Lua script per state change.

Layout and scripts: docs/storage.md and the headers of ``lua/*.lua``. Every script call goes
through ``RedisStore._eval`` (tests wrap it to check slots and idempotency).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import EqualJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from durable_redis.errors import (
    ConfigurationError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceRunningError,
    NamespaceMissingError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
)
from durable_redis.storage.base import (
    ExistingInstancePolicy,
    InstanceCreate,
    InstanceInfo,
    InstancePage,
    InstanceStatus,
    OrchestrationLease,
    QueueDepths,
    QueuedMessage,
    SessionRef,
    Store,
    TurnCommit,
    WorkItemLease,
)
from durable_redis.storage.cluster import CLUSTER_SCHEMES, Doorbell, cluster_client_from_url
from durable_redis.storage.keys import (
    STATUS_ORDER,
    PartitionKeys,
    item_id,
    meta_key,
    partition_of,
    session_key,
    validate_id,
)
from durable_redis.storage.scripts import SCRIPTS, Status, load_script_source, raise_for_status

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
# Client-side retries of a command whose connection failed (see RedisStore.from_url): the sum of
# the back-offs (0.1, 0.2, ... capped at 2 s, each with jitter to half) rides out ~9-17 s.
RETRY_ATTEMPTS = 12
RETRY_BACKOFF_BASE_S = 0.05
RETRY_BACKOFF_CAP_S = 2.0
_T = TypeVar("_T")


def _s(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _opt(value: Any) -> str:
    return "" if value is None else str(int(value))


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return {_s(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _split_cursor(cursor: str) -> tuple[str, str, str]:
    """``<partition or m>:<created_ms>:<instance id>``; ValidationError for anything else."""
    parts = cursor.split(":", 2) if isinstance(cursor, str) else []
    if len(parts) != 3 or not parts[1].lstrip("-").isdigit():
        raise ValidationError(f"invalid list cursor {cursor!r} (pass back a next_cursor)")
    if parts[0] != "m" and not parts[0].isdigit():
        raise ValidationError(f"invalid list cursor {cursor!r} (pass back a next_cursor)")
    return parts[0], parts[1], parts[2]


def _info(instance_id: str, fields: dict[str, Any]) -> InstanceInfo:
    def num(name: str) -> int | None:
        v = fields.get(name)
        return None if v is None else int(v)

    parent = fields.get("parent")
    return InstanceInfo(
        instance_id=instance_id,
        name=_s(fields.get("name", b"")),
        version=_s(fields.get("version", b"")),
        status=InstanceStatus(_s(fields.get("status", b"pending"))),
        execution_id=num("exec") or 0,
        created_at_ms=num("created") or 0,
        updated_at_ms=num("updated") or 0,
        completed_at_ms=num("completed"),
        parent_instance_id=None if parent is None else _s(parent),
        output=fields.get("output"),
        error=fields.get("error"),
        custom_status=fields.get("custom"),
        input=fields.get("input"),
    )


class RedisStore:
    """The Store contract on one Redis or on a Redis Cluster.

    ``RedisStore(client, namespace=...)`` wraps an existing ``redis.asyncio.Redis``, a
    ``redis.asyncio.cluster.RedisCluster`` (or a fakeredis async client) created with
    ``decode_responses=False``; ``from_url`` builds one (``redis+cluster://`` for a cluster).
    With ``partitions > 1`` a message to an instance of another partition goes through the
    committing partition's outbox (docs/storage.md "Cluster").
    """

    def __init__(
        self,
        redis_client: Redis,
        *,
        namespace: str = "default",
        partitions: int | None = None,
        allow_unsafe_eviction: bool = False,
        owns_client: bool = False,
        block_timeout_s: float = 2.0,
        max_messages_per_turn: int = 1000,
        session_window: int = 200,
        outbox_tombstone_ms: int = 24 * 3600 * 1000,
        outbox_sweep_s: float = 5.0,
    ) -> None:
        if not namespace or any(c in namespace for c in "{}\n\x00"):
            raise ConfigurationError(f"invalid namespace {namespace!r}")
        if partitions is not None and partitions < 1:
            raise ConfigurationError("partitions must be >= 1")
        if not 0 < block_timeout_s <= 2.0:
            raise ConfigurationError("block_timeout_s must be in (0, 2]")
        self.namespace = namespace
        self._redis = redis_client
        # redis-py's overloaded sync/async annotations do not help here; replies are parsed
        self._r: Any = redis_client
        self._requested_partitions = partitions
        self._allow_unsafe_eviction = allow_unsafe_eviction
        self._owns_client = owns_client
        self._block_s = block_timeout_s
        self._max_messages = max_messages_per_turn
        self._session_window = session_window
        self._epoch: str | None = None
        self._parts: list[PartitionKeys] = []
        self._scripts: dict[str, AsyncScript] = {}
        self._clock_offset_ms = 0
        self._rr = 0
        self._init_lock = asyncio.Lock()
        self._is_cluster = isinstance(redis_client, RedisCluster)
        self._bell: Doorbell | None = None
        self._tombstone_ms = outbox_tombstone_ms
        self._sweep_s = outbox_sweep_s
        self._last_sweep = time.monotonic()
        # instance -> last execution id seen (lock_messages' guess of the history key); a hint
        # only: a wrong guess costs the separate LRANGE it saves when right
        self._exec_guess: dict[str, int] = {}
        # set when our last commit saw nothing claimable (P = 1): the next orchestration fetch
        # blocks on the marker first instead of running a claim that would find nothing
        self._nothing_due = False

    def _remember_exec(self, instance_id: str, execution_id: int) -> None:
        if execution_id == 1:
            self._exec_guess.pop(instance_id, None)  # 1 is the default guess
            return
        if len(self._exec_guess) >= 10_000:
            self._exec_guess.clear()
        self._exec_guess[instance_id] = execution_id

    @classmethod
    def from_url(
        cls,
        url: str,
        namespace: str = "default",
        *,
        partitions: int | None = None,
        allow_unsafe_eviction: bool = False,
        socket_timeout: float = 10.0,
        max_connections: int | None = None,
        **store_options: Any,
    ) -> RedisStore:
        """Connect with a URL: ``redis://``, ``rediss://``, ``unix://``, or a cluster node's
        ``redis+cluster://host:port`` / ``rediss+cluster://`` (Redis Cluster).

        A ``partitions=P`` query parameter (``redis+cluster://host:7000?partitions=8``) sets the
        partition count of a new namespace, so workers, clients and the CLI can be given it in
        the one URL they share; the ``partitions`` argument wins over it.
        """
        url, from_query = _pop_partitions(url)
        if partitions is None:
            partitions = from_query
        kwargs: dict[str, Any] = {"socket_timeout": socket_timeout, "decode_responses": False}
        if max_connections is not None:
            kwargs["max_connections"] = max_connections
        client: Any
        if url.split("://", 1)[0] in CLUSTER_SCHEMES:
            client = cluster_client_from_url(url, **kwargs)
        else:
            # redis-py's from_url connections retry nothing by default: one dropped connection
            # or a Redis restart would surface to every caller. Every script is safe to run
            # twice, so re-send on connection errors and timeouts, backing off for ~10-20 s.
            kwargs["retry"] = AsyncRetry(
                EqualJitterBackoff(cap=RETRY_BACKOFF_CAP_S, base=RETRY_BACKOFF_BASE_S),
                RETRY_ATTEMPTS,
            )
            client = aioredis.Redis.from_url(url, **kwargs)
        return cls(
            client,
            namespace=namespace,
            partitions=partitions,
            allow_unsafe_eviction=allow_unsafe_eviction,
            owns_client=True,
            **store_options,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def partitions(self) -> int:
        return len(self._parts)

    async def initialize(self) -> None:
        async with self._init_lock:
            await self._check_eviction_policy()
            meta = meta_key(self.namespace)
            fields = {_s(k): _s(v) for k, v in (await self._r.hgetall(meta)).items()}
            if not fields:
                wanted = self._requested_partitions or 1
                probe = [PartitionKeys(self.namespace, p) for p in range(wanted)]
                if any([await self._r.exists(pk.pmeta, pk.seq) for pk in probe]):
                    raise NamespaceMissingError(
                        f"namespace {self.namespace!r}: metadata {meta} is gone but partition "
                        "data exists (Redis flushed or restarted without persistence?)"
                    )
                await self._r.hsetnx(meta, "epoch", secrets.token_hex(8))
                await self._r.hsetnx(meta, "partitions", str(wanted))
                await self._r.hsetnx(meta, "schema", SCHEMA_VERSION)
                fields = {_s(k): _s(v) for k, v in (await self._r.hgetall(meta)).items()}
            epoch = fields["epoch"]
            count = int(fields.get("partitions", "1"))
            if self._requested_partitions not in (None, count):
                raise ConfigurationError(
                    f"namespace {self.namespace!r} has {count} partitions, "
                    f"not {self._requested_partitions}"
                )
            parts = [PartitionKeys(self.namespace, p) for p in range(count)]
            for pk in parts:
                current = await self._r.hget(pk.pmeta, "epoch")
                if current is None:
                    if await self._r.exists(pk.seq):
                        raise NamespaceMissingError(
                            f"namespace {self.namespace!r}: partition {pk.index} lost its metadata"
                        )
                    await self._r.hsetnx(pk.pmeta, "epoch", epoch)
                    current = await self._r.hget(pk.pmeta, "epoch")
                if _s(current) != epoch:
                    raise NamespaceMissingError(
                        f"namespace {self.namespace!r}: partition {pk.index} belongs to another "
                        "incarnation of the namespace"
                    )
            if self._is_cluster:
                for pk in parts:  # scripts SPUBLISH marker rings (see cluster.Doorbell)
                    await self._r.hset(pk.pmeta, "bell", "1")
            for name in SCRIPTS:
                if name not in self._scripts:
                    self._scripts[name] = self._r.register_script(load_script_source(name))
            server = await self.server_time_ms()
            self._clock_offset_ms = server - int(time.time() * 1000)
            self._epoch = epoch
            self._parts = parts

    async def _check_eviction_policy(self) -> None:
        try:
            reply = await self._r.config_get("maxmemory-policy")
        except ResponseError:
            log.warning("cannot read maxmemory-policy (CONFIG GET refused); assuming noeviction")
            return
        policy = _s(next(iter(reply.values()), b"noeviction")) if reply else "noeviction"
        if policy != "noeviction" and not self._allow_unsafe_eviction:
            raise ConfigurationError(
                f"Redis maxmemory-policy is {policy!r}: eviction can silently delete workflow "
                "state. Set it to 'noeviction', or pass allow_unsafe_eviction=True."
            )

    async def close(self) -> None:
        if self._bell is not None:
            await self._bell.aclose()
            self._bell = None
        if self._owns_client:
            await self._r.aclose()

    async def server_time_ms(self) -> int:
        sec, usec = await self._r.time()
        return int(sec) * 1000 + int(usec) // 1000

    async def _ready(self) -> str:
        if self._epoch is None:
            await self.initialize()
        assert self._epoch is not None
        return self._epoch

    def _pk(self, instance_id: str) -> PartitionKeys:
        return self._parts[partition_of(instance_id, len(self._parts))]

    def _same_partition(self, pk: PartitionKeys, instance_id: str, what: str) -> None:
        if self._pk(instance_id).index != pk.index:
            raise NotImplementedError(
                f"{what} crosses partitions ({instance_id!r}): a child created in the "
                "committing instance's partition must have its parent there too"
            )

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        """Run one script (EVALSHA, NOSCRIPT reload). The single path every script call takes."""
        reply = await self._scripts[name](keys=list(keys), args=list(args))
        return list(reply)

    # -- blocking ------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(time.time() * 1000) + self._clock_offset_ms

    async def _doorbell(self, channels: list[str]) -> Doorbell:
        if self._bell is None:
            self._bell = Doorbell(self._r, now_ms=self._now_ms, fallback_s=self._block_s)
        await self._bell.ensure(channels)
        return self._bell

    async def _fetch_waiting(
        self,
        markers: list[str],
        wait_ms: int,
        attempt: Callable[[], Any],
        *,
        skip_first_try: bool = False,
    ) -> Any:
        """Run ``attempt`` until it returns something or ``wait_ms`` passed, waiting on markers.

        Standalone: ``BZPOPMIN`` on all markers. Cluster: the doorbell (armed before each attempt
        so a ring during the attempt is not missed).
        """
        deadline = time.monotonic() + wait_ms / 1000.0
        if not self._is_cluster or wait_ms <= 0:
            if skip_first_try and wait_ms > 0:
                # Nothing was claimable a moment ago: any work arriving since armed the marker
                # ("0" now, "1" due time), so wait on it first (one claim saved per turn).
                await self._wait_marker(markers, wait_ms / 1000.0)
            while True:
                got = await attempt()
                if got or wait_ms <= 0:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return got
                await self._wait_marker(markers, remaining)
        bell = await self._doorbell(markers)
        while True:
            ticket = bell.arm(markers)
            try:
                got = await attempt()
            except BaseException:
                bell.disarm(ticket)
                raise
            remaining = deadline - time.monotonic()
            if got or remaining <= 0:
                bell.disarm(ticket)
                return got
            await bell.wait(ticket, remaining)

    async def _wait_marker(self, keys: list[str], remaining_s: float) -> None:
        """Block on wake-up markers (BZPOPMIN) for at most ``remaining_s`` (chunks <= 2 s)."""
        timeout = max(0.01, min(remaining_s, self._block_s))
        try:
            popped = await self._r.bzpopmin(keys, timeout=timeout)
        except RedisTimeoutError:
            return
        if popped is None:
            return
        _key, member, score = popped
        if _s(member) != "1":
            return
        # a due time: keep blocking until it comes (an earlier "0" still wakes us)
        now = int(time.time() * 1000) + self._clock_offset_ms
        wait_s = (float(score) - now) / 1000.0
        if wait_s > 0:
            try:
                await self._r.bzpopmin(
                    keys, timeout=max(0.01, min(wait_s, remaining_s, self._block_s))
                )
            except RedisTimeoutError:
                return

    # -- orchestration queue -----------------------------------------------------------------

    async def create_instance(
        self,
        instance_id: str,
        create: InstanceCreate,
        message_id: str,
        start_message: bytes,
        *,
        policy: ExistingInstancePolicy = ExistingInstancePolicy.FAIL,
        visible_at_ms: int | None = None,
    ) -> bool:
        epoch = await self._ready()
        validate_id("instance id", instance_id)
        validate_id("message id", message_id)
        pk = self._pk(instance_id)
        ik = pk.instance(instance_id)
        parent = create.parent_instance_id or ""
        children = ik.children
        if parent:
            validate_id("parent instance id", parent)
            ppk = self._pk(parent)
            if ppk.index == pk.index:
                children = pk.instance(parent).children
            else:  # link first: a dangling child id is harmless, a lost link is not
                await self._r.sadd(ppk.instance(parent).children, instance_id)
        keys = [
            pk.pmeta,
            pk.seq,
            ik.record,
            ik.done,
            ik.mz,
            ik.mh,
            pk.oq_ready,
            pk.oq_locks,
            pk.oq_marker,
            pk.idx_created,
            pk.idx_status("pending"),
            children,
        ]
        args = [
            epoch,
            instance_id,
            create.name,
            create.version,
            parent,
            "0" if create.input is None else "1",
            create.input or b"",
            message_id,
            start_message,
            _opt(visible_at_ms),
            "ignore" if policy == ExistingInstancePolicy.IGNORE else "fail",
        ]
        for _ in range(5):
            reply = await self._eval("create_instance", keys, args)
            if reply[0] == Status.OK:
                return bool(reply[1])
            if reply[0] != Status.EXISTS:
                raise_for_status("create_instance", reply, instance_id)
            status = InstanceStatus(_s(reply[1]))
            if policy != ExistingInstancePolicy.TERMINATE_IF_DONE or not status.is_terminal:
                raise_for_status("create_instance", reply, instance_id)
            await self._delete_tree(instance_id, force=False, missing_ok=True)
        raise InstanceExistsError(f"instance {instance_id!r} keeps being re-created")

    async def enqueue_message(
        self,
        instance_id: str,
        message_id: str,
        data: bytes,
        *,
        visible_at_ms: int | None = None,
    ) -> bool:
        epoch = await self._ready()
        validate_id("instance id", instance_id)
        validate_id("message id", message_id)
        pk = self._pk(instance_id)
        ik = pk.instance(instance_id)
        reply = await self._eval(
            "enqueue_message",
            [
                pk.pmeta,
                pk.seq,
                ik.record,
                ik.done,
                ik.mz,
                ik.mh,
                pk.oq_ready,
                pk.oq_locks,
                pk.oq_marker,
            ],
            [epoch, instance_id, message_id, data, _opt(visible_at_ms)],
        )
        if reply[0] != Status.OK:
            raise_for_status("enqueue_message", reply, instance_id)
        return bool(reply[1])

    async def fetch_orchestration(
        self, *, lock_ms: int, wait_ms: int = 0
    ) -> OrchestrationLease | None:
        await self._ready()
        if len(self._parts) > 1 and time.monotonic() - self._last_sweep >= self._sweep_s:
            self._last_sweep = time.monotonic()
            await self.sweep_outboxes()

        async def attempt() -> OrchestrationLease | None:
            return await self._try_fetch_orchestration(lock_ms)

        skip, self._nothing_due = self._nothing_due, False
        lease: OrchestrationLease | None = await self._fetch_waiting(
            [pk.oq_marker for pk in self._parts], wait_ms, attempt, skip_first_try=skip
        )
        return lease

    async def _try_fetch_orchestration(self, lock_ms: int) -> OrchestrationLease | None:
        epoch = await self._ready()
        n = len(self._parts)
        self._rr = (self._rr + 1) % n
        for offset in range(n):
            pk = self._parts[(self._rr + offset) % n]
            for _ in range(20):
                nonce = secrets.token_hex(8)
                claim = await self._eval(
                    "claim_orchestration",
                    [pk.pmeta, pk.seq, pk.oq_ready, pk.oq_locks, pk.oq_lock, pk.oq_marker],
                    [epoch, nonce, lock_ms],
                )
                if claim[0] != Status.OK:
                    raise_for_status("claim_orchestration", claim)
                if len(claim) == 1:
                    break
                iid, token = _s(claim[1]), _s(claim[2])
                lease = await self._lock_messages(pk, epoch, iid, token)
                if lease is not None:
                    return lease
        return None

    async def _lock_messages(
        self, pk: PartitionKeys, epoch: str, iid: str, token: str
    ) -> OrchestrationLease | None:
        ik = pk.instance(iid)
        # The history comes back in the same call when the execution id is guessed right: the
        # last one this store saw for the instance, else 1 (most instances never continue).
        guess = self._exec_guess.get(iid, 1)
        reply = await self._eval(
            "lock_messages",
            [
                pk.pmeta,
                pk.oq_lock,
                pk.oq_locks,
                pk.oq_ready,
                pk.oq_marker,
                ik.record,
                ik.done,
                ik.mz,
                ik.mh,
                ik.history(guess),
            ],
            [epoch, iid, token, self._max_messages, guess],
        )
        if reply[0] in (Status.NOT_FOUND, Status.EMPTY, Status.LEASE_LOST):
            return None
        if reply[0] != Status.OK:
            raise_for_status("lock_messages", reply, iid)
        lease_until = int(reply[1])
        info = _info(iid, _pairs(reply[2]))
        flat = reply[3]
        messages = [
            QueuedMessage(message_id=_s(flat[i]), data=flat[i + 1], attempt=int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]
        history: list[bytes] = []
        if info.execution_id > 0:
            if len(reply) > 5 and int(reply[4]) == 1:
                history = list(reply[5])
            else:
                history = list(await self._r.lrange(ik.history(info.execution_id), 0, -1))
            self._remember_exec(iid, info.execution_id)
        return OrchestrationLease(
            instance_id=iid,
            token=token,
            lease_until_ms=lease_until,
            execution_id=info.execution_id,
            history=history,
            messages=messages,
            attempt=max((m.attempt for m in messages), default=0),
            instance=info,
        )

    async def commit_turn(self, lease: OrchestrationLease, commit: TurnCommit) -> None:
        epoch = await self._ready()
        iid = lease.instance_id
        pk = self._pk(iid)
        ik = pk.instance(iid)
        # target groups: every other instance a message goes to
        groups: dict[str, int] = {}
        group_keys: list[str] = []
        msg_args: list[Any] = []
        outbox = False
        for m in commit.messages:
            validate_id("instance id", m.instance_id)
            validate_id("message id", m.message_id)
            g = 0
            if self._pk(m.instance_id).index != pk.index:
                g = -1  # another partition: the outbox, delivered after the commit
                outbox = True
                if m.create and m.create.parent_instance_id:
                    validate_id("parent instance id", m.create.parent_instance_id)
            elif m.instance_id != iid:
                if m.instance_id not in groups:
                    groups[m.instance_id] = len(groups) + 1
                    tk = pk.instance(m.instance_id)
                    parent = m.create.parent_instance_id if m.create else None
                    if parent:
                        validate_id("parent instance id", parent)
                        self._same_partition(pk, parent, "a child's parent")
                    pc = pk.instance(parent).children if parent else tk.children
                    group_keys += [tk.record, tk.done, tk.mz, tk.mh, pc]
                g = groups[m.instance_id]
            c = m.create
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
        # wake keys of the live owners of sessions that get new work (a hint, re-checked in Lua)
        wake_owners: list[str] = []
        session_ids = sorted({w.session_id for w in commit.work_items if w.session_id})
        if session_ids:
            for sid in session_ids:
                validate_id("session id", sid)
            owners = await self._r.hmget(
                pk.sess, [session_key(iid, sid) + "|o" for sid in session_ids]
            )
            wake_owners = sorted({_s(o) for o in owners if o})
        flags = [
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
            ("2" if commit.custom_status is None else "1") if commit.set_custom_status else "0",
            commit.custom_status or b"",
        ]
        args: list[Any] = [
            epoch,
            iid,
            lease.token,
            commit.execution_id,
            commit.expected_history_len,
            InstanceStatus(commit.status).value,
            *flags,
            len(groups),
            len(wake_owners),
            len(commit.events),
            *commit.events,
        ]
        args.append(len(commit.work_items))
        for w in commit.work_items:
            validate_id("activity key", w.activity_key)
            args += [
                item_id(iid, w.activity_key),
                w.activity_key,
                w.session_id or "",
                _opt(w.visible_at_ms),
                w.data,
            ]
        args.append(len(commit.cancelled_work))
        args += [item_id(iid, k) for k in commit.cancelled_work]
        for sessions in (commit.sessions_opened, commit.sessions_closed):
            for sid in sessions:
                validate_id("session id", sid)
            args.append(len(sessions))
            args += list(sessions)
        args.append(len(commit.messages))
        args += msg_args
        args += wake_owners
        keys = [
            pk.pmeta,
            pk.seq,
            pk.oq_lock,
            pk.oq_locks,
            pk.oq_ready,
            pk.oq_marker,
            ik.record,
            ik.done,
            ik.mz,
            ik.mh,
            ik.history(commit.execution_id),
            pk.idx_created,
            pk.idx_terminal,
            *pk.idx_statuses,
            ik.work,
            ik.sessions,
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
            *group_keys,
            *[pk.wq_wake(o) for o in wake_owners],
        ]
        reply = await self._eval("commit_turn", keys, args)
        if reply[0] != Status.OK:
            raise_for_status("commit_turn", reply, iid)
        self._remember_exec(iid, commit.execution_id)
        if len(reply) > 1 and int(reply[1]) == 0 and len(self._parts) == 1:
            self._nothing_due = True
        if outbox:
            try:
                await self.deliver_outbox(pk.index)
            except Exception:  # committed: any worker's sweep delivers the leftovers
                log.warning("outbox delivery from partition %d failed", pk.index, exc_info=True)

    # -- outbox (cross-partition delivery) ----------------------------------------------------

    _OUTBOX_FIELDS = ("d", "v", "c", "n", "r", "p", "h", "i")

    async def deliver_outbox(self, partition: int, *, batch: int = 100) -> int:
        """Deliver partition ``partition``'s outbox, oldest first; returns entries delivered.

        Apply (``outbox_apply`` in each destination partition, deduped by tombstones) THEN
        remove (``outbox_ack``): a crash in between leaves the entry for a later delivery, which
        the destination drops. Every deliverer takes the outbox from its oldest entry, so a
        message is never applied before an older one of the same source partition.
        """
        epoch = await self._ready()
        pk = self._parts[partition]
        delivered = 0
        while True:
            entries = [_s(e) for e in await self._r.zrange(pk.outbox, 0, batch - 1)]
            if not entries:
                return delivered
            fields = [f"{e}|{f}" for e in entries for f in self._OUTBOX_FIELDS]
            values = await self._r.hmget(pk.outbox_data, fields)
            by_dest: dict[int, list[list[Any]]] = {}
            width = len(self._OUTBOX_FIELDS)
            for n, entry in enumerate(entries):
                d, v, c, name, version, parent, has_input, inp = values[n * width : n * width + 8]
                if d is None:  # delivered and removed meanwhile (or a half-removed entry)
                    continue
                target, mid = entry.split("\n", 1)
                row = [target, mid, d, _s(v or b""), _s(c or b"0"), name or b"", version or b""]
                row += [parent or b"", _s(has_input or b"0"), inp or b""]
                by_dest.setdefault(self._pk(target).index, []).append(row)
            for dest, rows in by_dest.items():
                dk = self._parts[dest]
                for i in range(0, len(rows), 50):
                    chunk = rows[i : i + 50]
                    keys = [
                        dk.pmeta,
                        dk.seq,
                        dk.oq_ready,
                        dk.oq_locks,
                        dk.oq_marker,
                        dk.inbox,
                        dk.idx_created,
                        dk.idx_status("pending"),
                    ]
                    args: list[Any] = [epoch, self._tombstone_ms, len(chunk)]
                    for row in chunk:
                        tk = dk.instance(_s(row[0]))
                        keys += [tk.record, tk.done, tk.mz, tk.mh]
                        args += row
                    reply = await self._eval("outbox_apply", keys, args)
                    if reply[0] != Status.OK:
                        raise_for_status("outbox_apply", reply)
            reply = await self._eval(
                "outbox_ack", [pk.pmeta, pk.outbox, pk.outbox_data], [epoch, *entries]
            )
            if reply[0] != Status.OK:
                raise_for_status("outbox_ack", reply)
            delivered += int(reply[1])
            if len(entries) < batch:
                return delivered

    async def sweep_outboxes(self) -> int:
        """Deliver what committers left in any outbox (they crashed between commit and
        delivery). One ZCARD per partition; runs from idle fetches at most every
        ``outbox_sweep_s``."""
        await self._ready()
        if len(self._parts) < 2:
            return 0
        pipe = self._r.pipeline(transaction=False)
        for pk in self._parts:
            pipe.zcard(pk.outbox)
        counts = await pipe.execute()
        delivered = 0
        for pk, count in zip(self._parts, counts, strict=True):
            if int(count):
                delivered += await self.deliver_outbox(pk.index)
        return delivered

    async def renew_orchestration(self, lease: OrchestrationLease, lock_ms: int) -> int:
        epoch = await self._ready()
        pk = self._pk(lease.instance_id)
        reply = await self._eval(
            "renew_orchestration",
            [pk.pmeta, pk.oq_lock, pk.oq_locks],
            [epoch, lease.instance_id, lease.token, lock_ms],
        )
        if reply[0] != Status.OK:
            raise_for_status("renew_orchestration", reply, lease.instance_id)
        return int(reply[1])

    async def abandon_orchestration(
        self, lease: OrchestrationLease, *, delay_ms: int = 0, count_attempt: bool = True
    ) -> None:
        epoch = await self._ready()
        pk = self._pk(lease.instance_id)
        ik = pk.instance(lease.instance_id)
        reply = await self._eval(
            "abandon_orchestration",
            [pk.pmeta, pk.oq_lock, pk.oq_locks, pk.oq_ready, pk.oq_marker, ik.mz, ik.mh],
            [
                epoch,
                lease.instance_id,
                lease.token,
                max(0, delay_ms),
                "1" if count_attempt else "0",
            ],
        )
        if reply[0] != Status.OK:
            raise_for_status("abandon_orchestration", reply, lease.instance_id)

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
    ) -> list[WorkItemLease]:
        await self._ready()
        validate_id("worker id", worker_id)
        if limit < 1:
            raise ValueError("limit must be >= 1")
        markers: list[str] = []
        for pk in self._parts:
            markers.append(pk.wq_marker)
            if session_lock_ms is not None:
                if claim_new_sessions:
                    markers.append(pk.wq_smarker)
                markers.append(pk.wq_wake(worker_id))

        async def attempt() -> list[WorkItemLease]:
            return await self._try_fetch_work(
                worker_id, limit, lock_ms, session_lock_ms, claim_new_sessions
            )

        items: list[WorkItemLease] = await self._fetch_waiting(markers, wait_ms, attempt)
        return items

    async def _try_fetch_work(
        self,
        worker_id: str,
        limit: int,
        lock_ms: int,
        session_lock_ms: int | None,
        claim_new: bool,
    ) -> list[WorkItemLease]:
        epoch = await self._ready()
        out: list[WorkItemLease] = []
        n = len(self._parts)
        self._rr = (self._rr + 1) % n
        for offset in range(n):
            if len(out) >= limit:
                break
            pk = self._parts[(self._rr + offset) % n]
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
                    limit - len(out),
                    lock_ms,
                    _opt(session_lock_ms),
                    "1" if claim_new else "0",
                    self._session_window,
                ],
            )
            if reply[0] != Status.OK:
                raise_for_status("fetch_work_items", reply)
            until = int(reply[1])
            flat = reply[2]
            for i in range(0, len(flat), 7):
                sid = _s(flat[i + 4])
                out.append(
                    WorkItemLease(
                        item_id=_s(flat[i]),
                        token=_s(flat[i + 1]),
                        instance_id=_s(flat[i + 2]),
                        activity_key=_s(flat[i + 3]),
                        session_id=sid or None,
                        data=flat[i + 5],
                        attempt=int(flat[i + 6]),
                        lease_until_ms=until,
                    )
                )
        return out

    async def ack_work_item(self, lease: WorkItemLease, message_id: str, completion: bytes) -> None:
        epoch = await self._ready()
        validate_id("message id", message_id)
        iid = lease.instance_id
        pk = self._pk(iid)
        ik = pk.instance(iid)
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
            ],
            [epoch, lease.item_id, lease.token, iid, message_id, completion],
        )
        if reply[0] != Status.OK:
            raise_for_status("ack_work_item", reply, lease.item_id.replace("\n", "/"))

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

    def _by_partition(
        self, things: Iterable[_T], instance_of: Callable[[_T], str]
    ) -> list[tuple[PartitionKeys, list[_T]]]:
        groups: dict[int, list[_T]] = {}
        for t in things:
            groups.setdefault(self._pk(instance_of(t)).index, []).append(t)
        return [(self._parts[i], g) for i, g in sorted(groups.items())]

    async def renew_sessions(
        self, worker_id: str, sessions: Sequence[SessionRef], lock_ms: int
    ) -> list[SessionRef]:
        epoch = await self._ready()
        lost: list[SessionRef] = []
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
        return lost

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

    # -- management --------------------------------------------------------------------------

    async def get_instance(self, instance_id: str) -> InstanceInfo | None:
        await self._ready()
        validate_id("instance id", instance_id)
        fields = await self._r.hgetall(self._pk(instance_id).instance(instance_id).record)
        if not fields:
            return None
        return _info(instance_id, {_s(k): v for k, v in fields.items()})

    async def read_history(self, instance_id: str, execution_id: int | None = None) -> list[bytes]:
        await self._ready()
        validate_id("instance id", instance_id)
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
    ) -> InstancePage:
        """Oldest first. The cursor is ``<partition>:<created_ms>:<instance id>`` (opaque)."""
        await self._ready()
        if len(self._parts) > 1:
            return await self._list_merged(
                status, name, created_after_ms, created_before_ms, limit, cursor
            )
        part, score, after = 0, created_after_ms, ""
        if cursor:
            p, s, after = _split_cursor(cursor)
            part, score = int(p), int(s)
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
                        return InstancePage(found, f"{pk.index}:{sc}:{member}")
                if scanned >= limit * 20:
                    return InstancePage(found, f"{pk.index}:{score}:{after}")
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
    ) -> InstancePage:
        """``list_instances`` over P > 1 partitions: a k-way merge by (created, id), so the order
        is global. Cursor ``m:<created_ms>:<instance id>``."""
        score, after = created_after_ms, ""
        if cursor:
            _m, cursor_score, after = _split_cursor(cursor)
            score = int(cursor_score)
        hi = "+inf" if created_before_ms is None else f"({created_before_ms}"
        page = limit + 50
        found: list[InstanceInfo] = []
        scanned = 0
        while True:
            lo = "-inf" if score is None else str(score)
            merged: list[tuple[int, str, PartitionKeys]] = []
            bound: tuple[int, str] | None = None  # rows past this may be missing (full pages)
            for pk in self._parts:
                index = pk.idx_status(InstanceStatus(status).value) if status else pk.idx_created
                raw = await self._r.zrangebyscore(index, lo, hi, start=0, num=page, withscores=True)
                rows = [(int(sc), _s(m)) for m, sc in raw]
                if len(rows) == page and (bound is None or rows[-1] < bound):
                    bound = rows[-1]
                merged += [
                    (sc, m, pk)
                    for sc, m in rows
                    if score is None or not after or (sc, m) > (score, after)
                ]
            merged.sort(key=lambda r: (r[0], r[1]))
            if bound is not None:
                merged = [r for r in merged if (r[0], r[1]) <= bound]
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
                    return InstancePage(found, f"m:{row_score}:{member}")
            if scanned >= limit * 20:
                return InstancePage(found, f"m:{score}:{after}")

    async def _infos(self, pk: PartitionKeys, ids: Sequence[str]) -> list[InstanceInfo | None]:
        pipe = self._r.pipeline(transaction=False)
        for iid in ids:
            pipe.hgetall(pk.instance(iid).record)
        rows = await pipe.execute()
        return [
            _info(iid, {_s(k): v for k, v in row.items()}) if row else None
            for iid, row in zip(ids, rows, strict=True)
        ]

    async def list_children(self, instance_id: str) -> list[str]:
        await self._ready()
        validate_id("instance id", instance_id)
        members = await self._r.smembers(self._pk(instance_id).instance(instance_id).children)
        return sorted(_s(m) for m in members)

    async def delete_instance(self, instance_id: str, *, force: bool = False) -> int:
        await self._ready()
        validate_id("instance id", instance_id)
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
        validate_id("instance id", instance_id)
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
            work += w
            session_work += sw
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


def _pop_partitions(url: str) -> tuple[str, int | None]:
    """Split a ``partitions=P`` query parameter off a Redis URL (redis-py would reject it)."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, None
    kept, count = [], None
    for param in query.split("&"):
        key, _, value = param.partition("=")
        if key != "partitions":
            kept.append(param)
            continue
        try:
            count = int(value)
        except ValueError:
            raise ConfigurationError(f"partitions must be a whole number, got {value!r}") from None
    return (f"{base}?{'&'.join(kept)}" if kept else base), count


def _unavailable_as_store_error(
    fn: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    """Connection failures that outlast the client's retries become StoreUnavailableError."""

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailableError(f"Redis is unavailable ({fn.__name__}): {exc}") from exc

    return call


# The public surface (the Store contract) raises only DurableRedisError subclasses.
for _name in sorted(n for n in dir(Store) if not n.startswith("_")):
    _method = getattr(RedisStore, _name, None)
    if inspect.iscoroutinefunction(_method):
        setattr(RedisStore, _name, _unavailable_as_store_error(_method))
