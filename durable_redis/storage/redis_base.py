"""``RedisStoreBase``: what every part of ``RedisStore`` shares.

The connection and its options, namespace initialisation and close, the script path
(``_eval``), partition lookup, and the blocking waits (markers, cluster doorbell) that the
fetches use. The operations live in mixins over this class (``activities``, ``management``,
``outbox``) and in ``redis_store.RedisStore`` (the orchestration queue).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis.asyncio.client import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from durable_redis.errors import (
    ConfigurationError,
    FunctionsMissingError,
    NamespaceMissingError,
    ReplicationTimeoutError,
)
from durable_redis.storage._replies import _info, _pairs, _s
from durable_redis.storage.base import InstanceInfo, OrchestrationLease, QueuedMessage
from durable_redis.storage.cluster import Doorbell
from durable_redis.storage.functions import SCRIPT_MODES, function_name, library_name
from durable_redis.storage.keys import PartitionKeys, meta_key, partition_of
from durable_redis.storage.scripts import SCRIPTS, load_script_source

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # C packing of commands (redis[hiredis]); redis-py's Python packer otherwise
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency
    _hiredis_pack = None

# the historical logger name (operators filter on it)
log = logging.getLogger("durable_redis.storage.redis_store")

SCHEMA_VERSION = "1"


async def _send_packed(conn: Any, packed: bytes) -> None:
    """``conn.send_packed_command(packed)`` without its ``asyncio.wait_for`` when the kernel
    takes the whole packet at once (nearly always: a script call is a few KB). redis-py wraps
    every send in ``wait_for`` when a socket timeout is set, which runs the write in a new
    task: ~20 us per script call. A write the socket buffer cannot take at once waits for it
    (bounded by the socket timeout) and fails as redis-py's would."""
    writer = getattr(conn, "_writer", None)
    timeout = getattr(conn, "socket_timeout", None)
    if (
        not isinstance(writer, asyncio.StreamWriter)  # not a socket (fakeredis)
        or not conn.is_connected
        or getattr(conn, "health_check_interval", None)
    ):
        await conn.send_packed_command(packed)
        return
    try:
        writer.write(packed)
        if writer.transport.get_write_buffer_size() > 0:
            await asyncio.wait_for(writer.drain(), timeout)
    except TimeoutError:
        await conn.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout writing to socket") from None
    except Exception as exc:  # OSError, or a transport closed under us (uvloop raises)
        await conn.disconnect(nowait=True)
        raise RedisConnectionError(f"Error while writing to socket: {exc!r}") from exc
    except BaseException:
        await conn.disconnect(nowait=True)  # a partial write: the connection is unusable
        raise


_T = TypeVar("_T")
# NOSCRIPT answers a call may reload through before it gives up (scripts flushed again meanwhile)
_NOSCRIPT_RELOADS = 5
DURABILITY_MODES = ("async", "replicated", "replicated_aof")
# scripts whose effects need no replica before they are acknowledged (durability="replicated"):
# fetches, claims and renewals (a failover that loses one only loses a lease, which fencing
# tokens make harmless); everything else (creates, messages, commits, acks, enqueues) waits
_UNREPLICATED = frozenset(
    {
        "claim_orchestration",
        "lock_messages",
        "renew_orchestration",
        "fetch_work_items",
        "renew_work_items",
        "renew_sessions",
        "fetch_jobs",
        "renew_jobs",
    }
)


# how many connections a store keeps checked out of its pool between script calls (at most)
_IDLE_CONNS = 8


class RedisStoreBase:
    """State and plumbing of ``RedisStore`` (construction, lifecycle, script calls, waits)."""

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
        scripts: str = "auto",
        durability: str = "async",
        replica_timeout: float = 1.0,
        replicas: int = 1,
        test_clock: bool = False,
    ) -> None:
        if not namespace or any(c in namespace for c in "{}\n\x00"):
            raise ConfigurationError(f"invalid namespace {namespace!r}")
        if partitions is not None and partitions < 1:
            raise ConfigurationError("partitions must be >= 1")
        if not 0 < block_timeout_s <= 2.0:
            raise ConfigurationError("block_timeout_s must be in (0, 2]")
        if scripts not in SCRIPT_MODES:
            raise ConfigurationError(f"scripts must be one of {SCRIPT_MODES}, got {scripts!r}")
        # scripts="auto"|"functions": FCALL of the loaded library (storage.functions); auto
        # falls back to EVALSHA for good at the first "function not found" / unknown FCALL
        self.scripts = scripts
        self._fcall = scripts != "eval"
        if test_clock:  # the library holds the production scripts: no virtual clock in them
            if scripts == "functions":
                raise ConfigurationError("a test_clock store runs its own scripts (EVALSHA)")
            self._fcall = False
        if durability not in DURABILITY_MODES:
            raise ConfigurationError(
                f"durability must be one of {DURABILITY_MODES}, got {durability!r}"
            )
        if durability != "async" and isinstance(redis_client, RedisCluster):
            raise ConfigurationError(
                f"durability={durability!r} is not supported on a Redis Cluster yet "
                "(WAIT must run on the connection of the write's node)"
            )
        if not 0 < replica_timeout <= 5.0 or replicas < 1:
            raise ConfigurationError("replica_timeout must be in (0, 5] s and replicas >= 1")
        # durability="replicated": every acknowledged write waits for `replicas` replicas on its
        # own connection (WAIT; "replicated_aof": WAITAOF, fsynced to the replicas' AOF)
        self.durability = durability
        self._wait: tuple[Any, ...] | None = None
        if durability == "replicated":
            self._wait = ("WAIT", replicas, _ms_of(replica_timeout))
        elif durability == "replicated_aof":
            self._wait = ("WAITAOF", 0, replicas, _ms_of(replica_timeout))
        self._replicas = replicas
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
        # durable_redis.testing only (storage/test_clock.py): scripts with the virtual clock,
        # and how far it runs ahead of the server's
        self._test_clock = test_clock
        self._virtual_ms = 0
        # starts the nonce of every instance lock this store takes (its tokens are
        # "<seq>:<nonce>"): a test environment tells a killed worker's locks by it
        self.lock_tag = secrets.token_hex(4) if test_clock else ""
        self._nonce_prefix = self.lock_tag + secrets.token_hex(8) + "."
        self._nonce_count = 0
        self._rr = 0
        self._init_lock = asyncio.Lock()
        self._is_cluster = isinstance(redis_client, RedisCluster)
        # plain Redis: scripts go straight to a pooled connection (see _call_on_connection)
        self._pool: Any = (
            None if self._is_cluster else getattr(redis_client, "connection_pool", None)
        )
        # connections of that pool kept checked out between script calls (see _take_conn)
        self._idle_conns: list[Any] = []
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
        # script calls by name, and "<name>:empty" for fetches that found nothing (benchmarks
        # read them: wasted calls per unit of work)
        self.calls: Counter[str] = Counter()

    def _remember_exec(self, instance_id: str, execution_id: int) -> None:
        if execution_id == 1:
            self._exec_guess.pop(instance_id, None)  # 1 is the default guess
            return
        if len(self._exec_guess) >= 10_000:
            self._exec_guess.clear()
        self._exec_guess[instance_id] = execution_id

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
                if self._test_clock:  # the only way a namespace gets a virtual clock
                    await self._r.hsetnx(meta, "test_clock", "1")
                fields = {_s(k): _s(v) for k, v in (await self._r.hgetall(meta)).items()}
            epoch = fields["epoch"]
            if self._test_clock and fields.get("test_clock") != "1":
                raise ConfigurationError(
                    f"namespace {self.namespace!r} was not created by a test environment "
                    "(no test_clock=1 in its metadata): a virtual clock is refused on it"
                )
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
            if self._test_clock:
                self._virtual_ms = int(fields.get("clock_offset", "0"))
                for pk in parts:  # never lowers an offset a concurrent skip just raised
                    await self._r.hset(pk.pmeta, "test_clock", "1")
                    await self._r.hsetnx(pk.pmeta, "clock_offset", str(self._virtual_ms))
            for name in SCRIPTS:
                if name not in self._scripts:
                    source = load_script_source(name, test_clock=self._test_clock)
                    self._scripts[name] = self._r.register_script(source)
            sec, usec = await self._r.time()
            self._clock_offset_ms = int(sec) * 1000 + int(usec) // 1000 - int(time.time() * 1000)
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
                "state. Set it to 'noeviction' (CONFIG SET maxmemory-policy noeviction, and in "
                "redis.conf). Only the Python API can accept the risk "
                "(RedisStore(..., allow_unsafe_eviction=True)); the command line never does."
            )

    async def close(self) -> None:
        conns, self._idle_conns = self._idle_conns, []
        for conn in conns:  # back to the pool they came from (the client may outlive us)
            await self._pool.release(conn)
        if self._bell is not None:
            await self._bell.aclose()
            self._bell = None
        if self._owns_client:
            await self._r.aclose()

    async def server_time_ms(self) -> int:
        """The clock the scripts judge by: the server's ``TIME`` (plus a test namespace's
        virtual offset, read with it, for a ``test_clock`` store)."""
        if not self._test_clock:
            sec, usec = await self._r.time()
            return int(sec) * 1000 + int(usec) // 1000
        if self._is_cluster:  # redis-py refuses TIME in a cluster pipeline
            sec, usec = await self._r.time()
            offset = await self._r.hget(meta_key(self.namespace), "clock_offset")
        else:
            pipe = self._r.pipeline(transaction=False)
            pipe.time()
            pipe.hget(meta_key(self.namespace), "clock_offset")
            (sec, usec), offset = await pipe.execute()
        self._virtual_ms = max(self._virtual_ms, int(offset or 0))
        return int(sec) * 1000 + int(usec) // 1000 + self._virtual_ms

    async def _ready(self) -> str:
        if self._epoch is None:
            await self.initialize()
        assert self._epoch is not None
        return self._epoch

    def _lock_nonce(self) -> str:
        """The part of an instance lock token this store chooses: unique to this store (64
        random bits drawn once) and to this lock (a counter); os.urandom per lock was 1 % of a
        worker's CPU on many_orch."""
        self._nonce_count += 1
        return f"{self._nonce_prefix}{self._nonce_count:x}"

    def _pk(self, instance_id: str) -> PartitionKeys:
        return self._parts[partition_of(instance_id, len(self._parts))]

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        """Run one script (FCALL of the function library, or EVALSHA with NOSCRIPT reload).
        The single path every script call takes."""
        self.calls[name] += 1
        wait = self._wait if name not in _UNREPLICATED else None
        if self._fcall:
            try:
                if self._pool is not None:
                    command = ("FCALL", function_name(name), len(keys), *keys, *args)
                    return await self._call_on_connection(command, None, wait)
                return list(await self._r.fcall(function_name(name), len(keys), *keys, *args))
            except ResponseError as exc:
                self._functions_missing(exc)  # not run: safe to send as EVALSHA
        script = self._scripts[name]
        if self._pool is not None:
            command = ("EVALSHA", script.sha, len(keys), *keys, *args)
            return await self._call_on_connection(command, script, wait)
        for _ in range(_NOSCRIPT_RELOADS):
            try:  # redis-py reloads once on NOSCRIPT; the scripts can go again meanwhile
                return list(await script(keys=list(keys), args=list(args)))
            except NoScriptError:
                continue
        return list(await script(keys=list(keys), args=list(args)))

    def _functions_missing(self, exc: ResponseError) -> None:
        """Re-raise ``exc`` unless it says the function library is absent (or FCALL is not in
        the user's ACL); then raise ``FunctionsMissingError`` (scripts="functions") or switch
        to EVALSHA for good (auto)."""
        text = str(exc).lower()
        denied = "permission" in text and "'fcall'" in text  # an ACL without +fcall
        if "function not found" not in text and "unknown command" not in text and not denied:
            raise exc
        if self.scripts == "functions":
            if denied:
                raise exc
            raise FunctionsMissingError(
                f"scripts='functions' but Redis has no function library {library_name()} "
                f"({exc}): an admin runs `durable-redis functions load` (Redis 7+)"
            ) from exc
        if self._fcall:
            self._fcall = False
            log.info("function library %s not loaded (%s): using EVALSHA", library_name(), exc)

    async def _call_on_connection(
        self,
        command: tuple[Any, ...],
        script: AsyncScript | None,
        wait: tuple[Any, ...] | None = None,
    ) -> list[Any]:
        """EVALSHA (``script``) or FCALL on a connection of the client's pool, without
        redis-py's per-command layers
        (``Script.__call__``, ``execute_command``, response callbacks, operation metrics), the
        command packed by hiredis in C (redis-py's Python packer costs ~2x more for a commit).
        Same retry policy as the client's commands (the connection's ``Retry``: a connection
        error disconnects it and re-sends; every script is safe to run twice) and the same
        NOSCRIPT reload. ``wait`` (durability="replicated"): ``WAIT``/``WAITAOF`` sent in the
        same packet on the same connection (WAIT covers the writes of its own connection only),
        ``ReplicationTimeoutError`` if fewer replicas than asked acknowledged in time."""
        conn = self._idle_conns.pop() if self._idle_conns else await self._pool.get_connection()
        clean = False
        try:

            async def send() -> Any:
                if _hiredis_pack is not None:
                    packed = _hiredis_pack(command)
                    if wait is not None:
                        packed += _hiredis_pack(wait)
                    await _send_packed(conn, packed)
                else:
                    await conn.send_command(*command)
                    if wait is not None:
                        await conn.send_command(*wait)
                if wait is None:
                    return await conn.read_response()
                try:
                    reply = await conn.read_response()
                finally:  # an error reply of the script: the WAIT's reply is still due
                    acked = await conn.read_response()
                return reply, acked

            async def failed(_error: Exception) -> None:
                await conn.disconnect()

            for reloads in range(_NOSCRIPT_RELOADS + 1):
                try:
                    reply = await conn.retry.call_with_retry(send, failed)
                    break
                except NoScriptError:
                    # not run: safe to send again. Loaded scripts can go again before the
                    # retry arrives (another SCRIPT FLUSH, a restart): reload a few times
                    if reloads == _NOSCRIPT_RELOADS or script is None:
                        raise

                    # on the connection this call holds: a reload through the client would
                    # check out a second one, and a burst of first calls of a script (each
                    # holding one) then ran the pool out ("Too many connections")
                    async def load(source: Any = script.script) -> Any:
                        await conn.send_command("SCRIPT", "LOAD", source)
                        return await conn.read_response()

                    script.sha = _s(await conn.retry.call_with_retry(load, failed))
                    command = ("EVALSHA", script.sha, *command[2:])
            clean = True
        finally:
            if clean and conn.is_connected and len(self._idle_conns) < _IDLE_CONNS:
                # every reply read: the connection is ready for the next script call. Kept
                # here instead of going back to the pool, which costs a lock, a can_read poll
                # of the socket and redis-py's connection metrics on every get and release
                self._idle_conns.append(conn)
            else:  # an error or a cancellation: the pool checks it before it is used again
                await self._pool.release(conn)
        if wait is not None:
            reply, acked = reply
            self._check_replicated(acked)
        return list(reply)

    def _check_replicated(self, acked: Any) -> None:
        """``WAIT`` answers the replicas count, ``WAITAOF`` ``[local, replicas]``."""
        count = int(acked[-1] if isinstance(acked, list) else acked)
        if count < self._replicas:
            assert self._wait is not None
            raise ReplicationTimeoutError(
                f"durability={self.durability!r}: {count} of {self._replicas} replica(s) "
                f"acknowledged the write within {self._wait[-1]} ms; it is applied on the "
                "primary, a failover now could lose it",
                replicas=count,
                wanted=self._replicas,
            )

    async def _lease_from_lock(
        self, iid: str, token: str, reply: Sequence[Any], lock_ms: int
    ) -> OrchestrationLease:
        """The lease from a lock reply ``{lease_until_ms, {record}, {messages}, read, {events}
        [, crashes]}`` (lock_messages; ack_work_item when it locked the instance) of a lock taken
        for ``lock_ms``: the lock was taken at ``lease_until_ms - lock_ms`` (server clock)."""
        lease_until = int(reply[0])
        info = _info(iid, _pairs(reply[1]))
        flat = reply[2]
        messages = [
            QueuedMessage(message_id=_s(flat[i]), data=flat[i + 1], attempt=int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]
        history: list[bytes] = []
        if info.execution_id > 0:
            if len(reply) > 4 and int(reply[3]) == 1:
                history = list(reply[4])
            else:
                pk = self._pk(iid)
                history = list(
                    await self._r.lrange(pk.instance(iid).history(info.execution_id), 0, -1)
                )
            self._remember_exec(iid, info.execution_id)
        return OrchestrationLease(
            instance_id=iid,
            token=token,
            lease_until_ms=lease_until,
            fetched_at_ms=lease_until - lock_ms,
            execution_id=info.execution_id,
            history=history,
            messages=messages,
            attempt=max((m.attempt for m in messages), default=0),
            instance=info,
            crashes=int(reply[5]) if len(reply) > 5 else 0,
        )

    # -- blocking ------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        """The scripts' clock, estimated without a round trip."""
        return int(time.time() * 1000) + self._clock_offset_ms + self._virtual_ms

    async def _doorbell(self, channels: list[str] | None = None) -> Doorbell:
        """The cluster's doorbell, subscribed to the marker ``channels``."""
        if self._bell is None:
            self._bell = Doorbell(self._r, now_ms=self._now_ms, fallback_s=self._block_s)
        if channels:
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
        now = self._now_ms()
        wait_s = (float(score) - now) / 1000.0
        if wait_s > 0:
            try:
                await self._r.bzpopmin(
                    keys, timeout=max(0.01, min(wait_s, remaining_s, self._block_s))
                )
            except RedisTimeoutError:
                return

    # -- helpers shared by the operations ----------------------------------------------------

    def _by_partition(
        self, things: Iterable[_T], instance_of: Callable[[_T], str]
    ) -> list[tuple[PartitionKeys, list[_T]]]:
        groups: dict[int, list[_T]] = {}
        for t in things:
            groups.setdefault(self._pk(instance_of(t)).index, []).append(t)
        return [(self._parts[i], g) for i, g in sorted(groups.items())]

    async def _infos(self, pk: PartitionKeys, ids: Sequence[str]) -> list[InstanceInfo | None]:
        pipe = self._r.pipeline(transaction=False)
        for iid in ids:
            pipe.hgetall(pk.instance(iid).record)
        rows = await pipe.execute()
        return [
            _info(iid, {_s(k): v for k, v in row.items()}) if row else None
            for iid, row in zip(ids, rows, strict=True)
        ]


def _ms_of(seconds: float) -> int:
    return max(1, round(seconds * 1000))
