"""Redis Cluster support: the cluster client (failover retries) and the wake-up doorbell.

Client: ``redis+cluster://host:port`` (or ``rediss+cluster://``) builds a
``redis.asyncio.cluster.RedisCluster`` that follows MOVED/ASK (redis-py) and, on top, retries a
command through a failover (``ClusterDownError``, connection errors, ``TRYAGAIN``, ``READONLY``,
``LOADING``, ``MASTERDOWN``) and through a slot migration (redis-py's redirect budget running out
on ``TRYAGAIN``: ``ClusterError("TTL exhausted")``) with a capped back-off for up to
``failover_timeout_s``. Re-sending is safe because every mutating script is idempotent
(docs/storage.md). Scripts are loaded per node: ``EVALSHA`` goes to the slot's primary,
``NOSCRIPT`` (a promoted replica has an empty script cache) makes redis-py ``SCRIPT LOAD`` on
every primary and retry.

Doorbell: a ``BZPOPMIN`` on several partition markers is CROSSSLOT on a cluster, and one blocked
connection per partition marker per process does not scale. In cluster mode every script that
arms a marker also ``SPUBLISH``es on the marker key's own name (the partition's slot; gated by
``pmeta.bell``, see ``ring`` in ``lua/includes/common.lua``). A process holds ONE sharded
subscription connection per primary node (not per partition), shared by all its waiters; a
message ``"0"`` wakes the waiters of that marker, a due time is remembered and wakes them when it
comes. Pub/sub is lossy, so every wait still re-checks after ``fallback_s`` (as the standalone
``BZPOPMIN`` wait re-checks every 2 s); a lost subscription (failover, node restart) is rebuilt
from a fresh topology, and waits use a short fallback until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.client import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    MasterDownError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["CLUSTER_SCHEMES", "Doorbell", "FailoverRetryingCluster", "cluster_client_from_url"]

log = logging.getLogger(__name__)

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

_RETRYABLE = (
    ClusterDownError,
    MasterDownError,
    SlotNotCoveredError,
    TryAgainError,
    RedisConnectionError,
    RedisTimeoutError,
)
_RETRYABLE_REPLIES = ("READONLY", "LOADING", "MASTERDOWN", "UNBLOCKED", "CLUSTERDOWN", "TRYAGAIN")


class FailoverRetryingCluster(RedisCluster):
    """``RedisCluster`` that keeps retrying through a primary -> replica failover."""

    failover_timeout_s: float = 30.0

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.failover_timeout_s
        delay = 0.05
        while True:
            try:
                return await super().execute_command(*args, **kwargs)
            except _RETRYABLE as exc:
                error: Exception = exc
            except ClusterError as exc:
                # redis-py's redirect budget (16 ASK/MOVED/TRYAGAIN, ~0.4 s) runs out while a
                # slot is half migrated: a multi-key script gets TRYAGAIN until it has moved
                if "TTL exhausted" not in str(exc):
                    raise
                error = exc
            except ResponseError as exc:
                if not str(exc).startswith(_RETRYABLE_REPLIES):
                    raise
                error = exc
            if time.monotonic() + delay > deadline:
                raise error
            log.debug("cluster command %s failed (%r); retrying in %.2fs", args[:1], error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            with contextlib.suppress(Exception):
                await self.nodes_manager.initialize()


def cluster_client_from_url(
    url: str, *, failover_timeout_s: float = 30.0, **kwargs: Any
) -> FailoverRetryingCluster:
    """A cluster client for ``redis+cluster://host:port`` (any node; the rest is discovered)."""
    parts = urlsplit(url)
    scheme = parts.scheme.replace("+cluster", "")
    plain = urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))
    # redis-py closes the whole client every 5th MOVED by default (reinitialize_steps), under
    # the feet of the other tasks sharing it ("handler is closed"): follow the MOVED only
    kwargs.setdefault("reinitialize_steps", 0)
    client = cast(FailoverRetryingCluster, FailoverRetryingCluster.from_url(plain, **kwargs))
    client.failover_timeout_s = failover_timeout_s
    return client


class _Ticket:
    __slots__ = ("channels", "event")

    def __init__(self, channels: frozenset[str]) -> None:
        self.channels = channels
        self.event = asyncio.Event()


class Doorbell:
    """Sharded pub/sub wake-ups for waiters on partition markers (one connection per node),
    and the completion channels a client watches (``watch``: the instances' idx:terminal)."""

    def __init__(
        self,
        cluster: RedisCluster,
        *,
        now_ms: Any,
        fallback_s: float = 2.0,
        degraded_fallback_s: float = 0.25,
    ) -> None:
        self._cluster = cluster
        self._now_ms = now_ms  # () -> int: the server clock estimate
        self.fallback_s = fallback_s
        self.degraded_fallback_s = degraded_fallback_s
        self._channels: set[str] = set()
        self._due: dict[str, int] = {}
        self._tickets: set[_Ticket] = set()
        self._handlers: dict[str, Callable[[str], None]] = {}  # watched channel -> handler
        self._subs: dict[str, tuple[Redis, Any, asyncio.Task[None]]] = {}
        self._lock = asyncio.Lock()
        self._healthy = False
        self._rebuild_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def connections(self) -> int:
        return len(self._subs)

    async def ensure(self, channels: Iterable[str]) -> None:
        """Subscribe to ``channels`` (marker key names) if not yet; learn their armed due times."""
        await self._learn_due(await self._add(channels))

    async def watch(self, channels: Iterable[str], handler: Callable[[str], None]) -> None:
        """Subscribe to completion ``channels`` if not yet: each message's payload (text) is
        passed to ``handler``; a rebuild may lose some (``healthy`` is False meanwhile)."""
        channels = list(channels)
        for ch in channels:
            self._handlers[ch] = handler
        await self._add(channels)

    async def _add(self, channels: Iterable[str]) -> list[str]:
        """Subscribe to the channels not subscribed yet; returns those."""
        channels = list(channels)
        if self._closed or self._channels.issuperset(channels):
            return []
        async with self._lock:
            new = [c for c in channels if c not in self._channels]
            if not new:
                return []
            self._channels.update(new)
            try:
                await self._subscribe(new)
            except Exception:
                log.warning("doorbell: subscribing failed; waits fall back to short re-checks")
                self._schedule_rebuild()
        return new

    async def _learn_due(self, channels: Iterable[str]) -> None:
        for ch in channels:
            with contextlib.suppress(Exception):
                score = await self._cluster.zscore(ch, "1")
                if score is not None:
                    self._note_due(ch, int(score))

    async def _subscribe(self, channels: Iterable[str]) -> None:
        by_node: dict[str, list[str]] = {}
        nodes: dict[str, Any] = {}
        for ch in channels:
            node = self._cluster.get_node_from_key(ch)
            if node is None:
                raise SlotNotCoveredError(f"no node for {ch}")
            by_node.setdefault(node.name, []).append(ch)
            nodes[node.name] = node
        for name, chans in by_node.items():
            if name not in self._subs:
                node = nodes[name]
                conn = Redis(host=node.host, port=node.port, decode_responses=True)
                pubsub = conn.pubsub()
                task = asyncio.create_task(self._read(name, pubsub))
                self._subs[name] = (conn, pubsub, task)
            _conn, pubsub, _task = self._subs[name]
            for ch in chans:  # one SSUBSCRIBE per channel: a batch must share a slot
                await pubsub.ssubscribe(ch)
        self._healthy = True

    async def _read(self, name: str, pubsub: Any) -> None:
        try:
            while True:
                if not pubsub.subscribed:
                    await asyncio.sleep(0.01)
                    continue
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "smessage":
                    self._on_message(str(message["channel"]), str(message["data"]))
                elif kind == "sunsubscribe":
                    # the node lost the slot (failover / resharding): resubscribe elsewhere
                    raise RedisConnectionError(f"doorbell: {name} unsubscribed us")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("doorbell connection to %s lost (%r); rebuilding", name, exc)
            self._healthy = False
            self._schedule_rebuild()

    def _schedule_rebuild(self) -> None:
        self._healthy = False
        self._wake_all()
        if self._closed or (self._rebuild_task is not None and not self._rebuild_task.done()):
            return
        self._rebuild_task = asyncio.create_task(self._rebuild())

    async def _rebuild(self) -> None:
        delay = 0.1
        while not self._closed:
            async with self._lock:
                await self._drop_subs()
                try:
                    await self._cluster.nodes_manager.initialize()
                    await self._subscribe(sorted(self._channels))
                    self._healthy = True
                except Exception as exc:
                    log.debug("doorbell rebuild failed (%r); retrying", exc)
                    await self._drop_subs()
                    self._healthy = False
            if self._healthy:
                await self._learn_due(sorted(self._channels.difference(self._handlers)))
                self._wake_all()  # anything armed while we were deaf
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _drop_subs(self) -> None:
        subs, self._subs = self._subs, {}
        for conn, pubsub, task in subs.values():
            if task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await conn.aclose()

    def _note_due(self, channel: str, due: int) -> None:
        cur = self._due.get(channel)
        if cur is None or due < cur or cur <= self._now_ms():  # a past due time is stale
            self._due[channel] = due

    def _on_message(self, channel: str, payload: str) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            handler(payload)
            return
        try:
            due = int(payload)
        except ValueError:
            due = 0
        if due > self._now_ms():
            self._note_due(channel, due)
            # a waiter sleeping for a later due time must recompute its timeout
        for t in list(self._tickets):
            if channel in t.channels:
                t.event.set()

    def _wake_all(self) -> None:
        for t in list(self._tickets):
            t.event.set()

    def arm(self, channels: Iterable[str]) -> _Ticket:
        """Register interest BEFORE checking the queues, so no ring is missed in between."""
        ticket = _Ticket(frozenset(channels))
        self._tickets.add(ticket)
        return ticket

    def disarm(self, ticket: _Ticket) -> None:
        self._tickets.discard(ticket)

    async def wait(self, ticket: _Ticket, remaining_s: float) -> None:
        """Sleep until a ring on the ticket's channels, a known due time, or the fallback."""
        try:
            if ticket.event.is_set():
                return
            now = self._now_ms()
            timeout = min(
                remaining_s, self.fallback_s if self._healthy else self.degraded_fallback_s
            )
            for ch in ticket.channels:
                due = self._due.get(ch)
                if due is None:
                    continue
                if due <= now:
                    del self._due[ch]  # came due before this wait: the fetch just checked
                    continue
                timeout = min(timeout, (due - now) / 1000.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ticket.event.wait(), max(0.001, timeout))
        finally:
            self.disarm(ticket)

    async def aclose(self) -> None:
        self._closed = True
        if self._rebuild_task is not None:
            self._rebuild_task.cancel()
            with contextlib.suppress(BaseException):
                await self._rebuild_task
        async with self._lock:
            await self._drop_subs()
        self._wake_all()
