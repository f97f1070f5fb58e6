"""``RedisStore``: the Store contract on Redis, one Lua script per state change.

Layout and scripts: docs/storage.md and the headers of ``lua/*.lua``. Every script call goes
through ``RedisStore._eval`` (tests wrap it to check slots and idempotency).

This module holds the class, ``from_url`` and the orchestration queue; the rest is in mixins:
``redis_base`` (state, initialize/close, ``_eval``, blocking waits), ``activities`` (activity
queue, sessions), ``management`` (get/list/delete/prune/depths/counts/janitor), ``outbox``
(cross-partition delivery). ``_replies`` and ``_url`` hold small helpers. The StoreUnavailableError
wrapping at the bottom runs once the class has all its mixins.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError as RedisNoPermissionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from durable_redis.errors import (
    ConfigurationError,
    InstanceExistsError,
    StoreFullError,
    StoreUnavailableError,
    ValidationError,
)
from durable_redis.ids import STORED, validate_id
from durable_redis.storage._replies import _opt, _s, _work_leases
from durable_redis.storage._url import _pop_partitions, _pop_store_params
from durable_redis.storage.activities import ActivityQueueMixin
from durable_redis.storage.base import (
    ClaimedInstance,
    ExistingInstancePolicy,
    InstanceCreate,
    InstanceStatus,
    OrchestrationLease,
    Store,
    TurnCommit,
    WorkItemLease,
    WorkTake,
)
from durable_redis.storage.cluster import CLUSTER_SCHEMES, cluster_client_from_url
from durable_redis.storage.job_types import JobStore
from durable_redis.storage.jobs import JobQueueMixin
from durable_redis.storage.keys import InstanceKeys, PartitionKeys
from durable_redis.storage.management import ManagementMixin
from durable_redis.storage.messaging import MessagingMixin
from durable_redis.storage.outbox import OutboxMixin
from durable_redis.storage.packing import pack_commit, session_owner_fields
from durable_redis.storage.redis_base import RedisStoreBase
from durable_redis.storage.schedules import ScheduleStoreMixin
from durable_redis.storage.scripts import Status, raise_for_status
from durable_redis.storage.test_clock import TestClockMixin

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

# Client-side retries of a command whose connection failed (see RedisStore.from_url): the sum of
# the back-offs (0.1, 0.2, ... capped at 2 s, each with jitter to half) rides out ~9-17 s.
RETRY_ATTEMPTS = 12
RETRY_BACKOFF_BASE_S = 0.05
RETRY_BACKOFF_CAP_S = 2.0


_START_MODE = re.compile(r"singleton|(debounce|throttle) [1-9][0-9]*")


@functools.cache
def _driver_info() -> dict[str, Any]:
    """redis-py's client name and version, resolved once per process.

    Without it, redis-py 8 looks its own version up in the package metadata for every new
    connection: ~0.5 ms each. A worker opens dozens of connections as its concurrency ramps up
    (64 orchestrations in flight: ~70), and that lookup was 5% of its CPU in a many_orch
    profile. Older redis-py resolves the version once at import and has no ``driver_info``."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # pragma: no cover - an older redis-py
        return {}
    return {"driver_info": DriverInfo()}


def _message_keys(pk: PartitionKeys, ik: InstanceKeys) -> list[str]:
    """KEYS of a message to instance ``ik``: all of ``enqueue_message``'s, and the first of
    ``create_instance``'s (the same order in both scripts)."""
    return [
        pk.pmeta,
        pk.seq,
        ik.record,
        ik.done,
        ik.mz,
        ik.mh,
        pk.oq_ready,
        pk.oq_locks,
        pk.oq_marker,
    ]


class RedisStore(
    ActivityQueueMixin,
    JobQueueMixin,
    ScheduleStoreMixin,
    ManagementMixin,
    OutboxMixin,
    MessagingMixin,
    TestClockMixin,
    RedisStoreBase,
):
    """The Store contract on one Redis or on a Redis Cluster.

    ``RedisStore(client, namespace=...)`` wraps an existing ``redis.asyncio.Redis``, a
    ``redis.asyncio.cluster.RedisCluster`` (or a fakeredis async client) created with
    ``decode_responses=False``; ``from_url`` builds one (``redis+cluster://`` for a cluster).
    With ``partitions > 1`` a message to an instance of another partition goes through the
    committing partition's outbox (docs/storage.md "Cluster").
    """

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
        the one URL they share; the ``partitions`` argument wins over it. So do ``scripts=``
        (``auto``/``functions``/``eval``: FCALL of the function library or EVALSHA,
        docs/security.md) and ``durability=`` (``async``/``replicated``, with
        ``replica_timeout=`` seconds: docs/reliability.md).
        """
        url, from_query = _pop_partitions(url)
        if partitions is None:
            partitions = from_query
        url, params = _pop_store_params(url)
        for key, value in params.items():  # the arguments win over the URL
            if key == "replica_timeout":
                try:
                    store_options.setdefault(key, float(value))
                except ValueError:
                    raise ConfigurationError(f"replica_timeout: a number, got {value!r}") from None
            else:
                store_options.setdefault(key, value)
        kwargs: dict[str, Any] = {"socket_timeout": socket_timeout, "decode_responses": False}
        kwargs.update(_driver_info())
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
        reply = await self._create(
            instance_id, create, message_id, start_message, policy, visible_at_ms, "", ""
        )
        return bool(reply[1])

    async def create_limited_instance(
        self,
        instance_id: str,
        create: InstanceCreate,
        message_id: str,
        start_message: bytes,
        *,
        flow_key: str,
        flow_mode: str,
        policy: ExistingInstancePolicy = ExistingInstancePolicy.FAIL,
        visible_at_ms: int | None = None,
    ) -> tuple[str, bool]:
        validate_id(flow_key, "flow key", rule=STORED)
        if not _START_MODE.fullmatch(flow_mode):
            raise ValidationError(f"bad start flow mode {flow_mode!r}")
        if self._pk(instance_id).index != self._pk(flow_key).index:
            raise ValidationError(
                f"instance {instance_id!r} is not in the partition of its flow key "
                f"{flow_key!r} (id_for_key gives an id that is)"
            )
        reply = await self._create(
            instance_id,
            create,
            message_id,
            start_message,
            policy,
            visible_at_ms,
            flow_key,
            flow_mode,
        )
        if int(reply[1]) == 2:
            return _s(reply[2]), False
        return instance_id, bool(reply[1])

    def id_for_key(self, instance_id: str | None, flow_key: str) -> str:
        return self.job_id_for_key(instance_id, flow_key)

    async def _create(
        self,
        instance_id: str,
        create: InstanceCreate,
        message_id: str,
        start_message: bytes,
        policy: ExistingInstancePolicy,
        visible_at_ms: int | None,
        flow_key: str,
        flow_mode: str,
    ) -> list[Any]:
        epoch = await self._ready()
        validate_id(instance_id, "instance id", rule=STORED)
        validate_id(message_id, "message id", rule=STORED)
        pk = self._pk(instance_id)
        ik = pk.instance(instance_id)
        parent = create.parent_instance_id or ""
        children = ik.children
        if parent:
            validate_id(parent, "parent instance id", rule=STORED)
            ppk = self._pk(parent)
            if ppk.index == pk.index:
                children = pk.instance(parent).children
            else:  # link first: a dangling child id is harmless, a lost link is not
                await self._r.sadd(ppk.instance(parent).children, instance_id)
        keys = [
            *_message_keys(pk, ik),
            pk.idx_created,
            pk.idx_status("pending"),
            children,
            pk.oq_flow,
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
            flow_key,
            flow_mode,
        ]
        for _ in range(5):
            reply = await self._eval("create_instance", keys, args)
            if reply[0] == Status.OK:
                return list(reply)
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
        validate_id(instance_id, "instance id", rule=STORED)
        validate_id(message_id, "message id", rule=STORED)
        pk = self._pk(instance_id)
        ik = pk.instance(instance_id)
        reply = await self._eval(
            "enqueue_message",
            _message_keys(pk, ik),
            [epoch, instance_id, message_id, data, _opt(visible_at_ms)],
        )
        if reply[0] != Status.OK:
            raise_for_status("enqueue_message", reply, instance_id)
        return bool(reply[1])

    async def fetch_orchestration(
        self, *, lock_ms: int, wait_ms: int = 0, skip: Sequence[str] = ()
    ) -> OrchestrationLease | None:
        await self._ready()
        if len(self._parts) > 1 and time.monotonic() - self._last_sweep >= self._sweep_s:
            self._last_sweep = time.monotonic()
            await self.sweep_outboxes()

        async def attempt() -> OrchestrationLease | None:
            return await self._try_fetch_orchestration(lock_ms, skip)

        wait_first, self._nothing_due = self._nothing_due, False
        lease: OrchestrationLease | None = await self._fetch_waiting(
            [pk.oq_marker for pk in self._parts], wait_ms, attempt, skip_first_try=wait_first
        )
        return lease

    async def _try_fetch_orchestration(
        self, lock_ms: int, skip: Sequence[str] = ()
    ) -> OrchestrationLease | None:
        epoch = await self._ready()
        n = len(self._parts)
        self._rr = (self._rr + 1) % n
        for offset in range(n):
            pk = self._parts[(self._rr + offset) % n]
            for _ in range(20):
                nonce = self._lock_nonce()
                claim = await self._eval(
                    "claim_orchestration",
                    [pk.pmeta, pk.seq, pk.oq_ready, pk.oq_locks, pk.oq_lock, pk.oq_marker],
                    [epoch, nonce, lock_ms, *skip],
                )
                if claim[0] != Status.OK:
                    raise_for_status("claim_orchestration", claim)
                if len(claim) == 1:
                    self.calls["claim_orchestration:empty"] += 1
                    break
                iid, token = _s(claim[1]), _s(claim[2])
                lease = await self._lock_messages(pk, epoch, iid, token, lock_ms)
                if lease is not None:
                    return lease
        return None

    async def _lock_messages(
        self, pk: PartitionKeys, epoch: str, iid: str, token: str, lock_ms: int
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
        return await self._lease_from_lock(iid, token, reply[1:], lock_ms)

    async def commit_turn(
        self, lease: OrchestrationLease, commit: TurnCommit, *, take: WorkTake | None = None
    ) -> list[WorkItemLease]:
        taken, _ = await self._commit_turn(lease, commit, take, None)
        return taken

    async def commit_turn_and_claim(
        self,
        lease: OrchestrationLease,
        commit: TurnCommit,
        *,
        lock_ms: int,
        take: WorkTake | None = None,
    ) -> tuple[list[WorkItemLease], ClaimedInstance | None]:
        """``commit_turn``, then in the same call the claim of the partition's next claimable
        instance for ``lock_ms`` (phase 1 of the committing worker's next fetch: run
        ``lock_claimed`` on it next). Only on a single-partition store: with more, the claims
        turn round the partitions (a worker's commits would keep it on one), so nothing is
        claimed here. A re-sent commit (lost reply) claims nothing; what its first run claimed
        is claimed again by anyone once that lock expires, as after a crash."""
        return await self._commit_turn(lease, commit, take, lock_ms)

    async def lock_claimed(
        self, claimed: ClaimedInstance, lock_ms: int
    ) -> OrchestrationLease | None:
        """Phase 2 of a fetch for an instance ``commit_turn_and_claim`` claimed: its lease, or
        None when it has nothing to run any more (its lock released then, as a fetch would)."""
        epoch = await self._ready()
        pk = self._pk(claimed.instance_id)
        return await self._lock_messages(pk, epoch, claimed.instance_id, claimed.token, lock_ms)

    async def _commit_turn(
        self,
        lease: OrchestrationLease,
        commit: TurnCommit,
        take: WorkTake | None,
        claim_lock_ms: int | None,
    ) -> tuple[list[WorkItemLease], ClaimedInstance | None]:
        epoch = await self._ready()
        iid = lease.instance_id
        pk = self._pk(iid)
        # wake keys of the owners of sessions that get new work or are purged (a hint, re-checked
        # in Lua); a terminal commit lists every open session among sessions_closed
        wake_owners: list[str] = []
        fields = session_owner_fields(iid, commit)
        if fields:
            wake_owners = sorted({_s(o) for o in await self._r.hmget(pk.sess, fields) if o})
        claim_nonce = ""
        if claim_lock_ms is not None and len(self._parts) == 1:
            claim_nonce = self._lock_nonce()
        keys, args, outbox = pack_commit(
            pk,
            lease,
            commit,
            epoch=epoch,
            partitions=len(self._parts),
            wake_owners=wake_owners,
            take=take,
            take_nonce=secrets.token_hex(8) if take is not None else "",
            claim_nonce=claim_nonce,
            claim_lock_ms=claim_lock_ms or 0,
        )
        reply = await self._eval("commit_turn", keys, args)
        if reply[0] != Status.OK:
            raise_for_status("commit_turn", reply, iid)
        self._remember_exec(iid, commit.execution_id)
        if len(reply) > 1 and int(reply[1]) == 0 and len(self._parts) == 1:
            self._nothing_due = True
        taken = _work_leases(reply[3], int(reply[2])) if len(reply) > 3 else []
        if taken:
            self.calls["commit_turn:taken"] += len(taken)
        claimed = None
        if len(reply) > 5 and reply[5]:
            claimed = ClaimedInstance(_s(reply[5][0]), _s(reply[5][1]))
            self.calls["commit_turn:claimed"] += 1
        elif claim_nonce:
            self.calls["commit_turn:claimed_none"] += 1
        if len(reply) > 4 and int(reply[4]) == 1:
            try:
                await self.purge_work(iid)
            except Exception:  # committed: the tombstone holds; fetches drop what is left
                log.warning("purge of %s's work items failed", iid, exc_info=True)
        if outbox:
            try:
                await self.deliver_outbox(pk.index)
            except Exception:  # committed: any worker's sweep delivers the leftovers
                log.warning("outbox delivery from partition %d failed", pk.index, exc_info=True)
        return taken, claimed

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
        self,
        lease: OrchestrationLease,
        *,
        delay_ms: int = 0,
        count_attempt: bool = True,
        until_start: bool = False,
        held: str | None = None,
    ) -> bool:
        epoch = await self._ready()
        pk = self._pk(lease.instance_id)
        ik = pk.instance(lease.instance_id)
        reply = await self._eval(
            "abandon_orchestration",
            [pk.pmeta, pk.oq_lock, pk.oq_locks, pk.oq_ready, pk.oq_marker, ik.mz, ik.mh, ik.record],
            [
                epoch,
                lease.instance_id,
                lease.token,
                max(0, delay_ms),
                "1" if count_attempt else "0",
                "1" if until_start else "0",
                held or "",
            ],
        )
        if reply[0] != Status.OK:
            raise_for_status("abandon_orchestration", reply, lease.instance_id)
        return len(reply) < 2 or int(reply[1]) == 1


def _unavailable_as_store_error(
    fn: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    """Connection failures that outlast the client's retries become StoreUnavailableError;
    refused credentials or ACL permissions become ConfigurationError; Redis's OOM reply
    (maxmemory reached, noeviction) becomes StoreFullError."""

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except (RedisAuthenticationError, RedisNoPermissionError) as exc:
            raise ConfigurationError(
                f"Redis refused {fn.__name__} for this user (password or ACL): {exc}"
            ) from exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailableError(f"Redis is unavailable ({fn.__name__}): {exc}") from exc
        except RedisOutOfMemoryError as exc:
            raise StoreFullError(
                f"Redis is out of memory ({fn.__name__}; maxmemory reached, policy noeviction): "
                f"{exc}"
            ) from exc

    return call


# The public surface (the Store contract) raises only DurableRedisError subclasses.
_PUBLIC = {n for n in dir(Store) if not n.startswith("_")}
_PUBLIC |= {n for n in dir(JobStore) if not n.startswith("_")} | {"job_counts"}
_PUBLIC |= {n for n in vars(ScheduleStoreMixin) if not n.startswith("_")} - {"schedule_job_id"}
for _name in sorted(_PUBLIC):
    _method = getattr(RedisStore, _name, None)
    if inspect.iscoroutinefunction(_method):
        setattr(RedisStore, _name, _unavailable_as_store_error(_method))
