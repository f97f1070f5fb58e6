"""The session manager: the session leases one worker holds, and what happens when one ends.

One entry per ``(instance, session)`` this worker owns (the worker id is the manager's own), shared
by every activity of that session running here. An entry is created when a fetch hands this worker
an item of the session (the fetch claimed or refreshed its lease) and removed when the lease ends:
lost (closed by its orchestration, purged on a terminal state, or taken over after it expired),
released after ``session_idle_timeout``, or released at shutdown. Removing the entry at once means
a later claim of the same session starts clean, and the owned count never drifts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from durable_redis.errors import StoreError
from durable_redis.runtime.cancel import CancelCause
from durable_redis.runtime.options import WorkerOptions
from durable_redis.storage.base import LostSessions, SessionRef, Store

__all__ = ["Cancellable", "SessionEntry", "SessionManager"]

logger = logging.getLogger(__name__)

# How long to remember that this worker released a session, to detect a fetch racing the release.
_RELEASE_MEMORY_S = 300.0


class Cancellable(Protocol):
    """An in-flight activity as seen by the session manager."""

    def cancel(self, cause: CancelCause, detail: str = "") -> None: ...


@dataclass(eq=False, slots=True)
class SessionEntry:
    ref: SessionRef
    claimed_at: float
    active: set[Cancellable] = field(default_factory=set)
    idle_since: float | None = None

    @property
    def is_idle(self) -> bool:
        return not self.active


class SessionManager:
    """Tracks, renews and releases the session leases of one worker."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        options: WorkerOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._options = options
        self._clock = clock
        self._entries: dict[SessionRef, SessionEntry] = {}
        self._released_at: dict[SessionRef, float] = {}

    # -- capacity ------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._options.max_sessions_per_worker > 0

    @property
    def owned_count(self) -> int:
        return len(self._entries)

    @property
    def remaining_capacity(self) -> int:
        return max(0, self._options.max_sessions_per_worker - len(self._entries))

    def owned(self) -> list[SessionRef]:
        return list(self._entries)

    def get(self, ref: SessionRef) -> SessionEntry | None:
        return self._entries.get(ref)

    # -- activity lifecycle --------------------------------------------------------------------
    def released_since(self, ref: SessionRef, since: float) -> bool:
        """True if this worker released ``ref`` at or after ``since`` (monotonic seconds)."""
        at = self._released_at.get(ref)
        return at is not None and at >= since

    async def verify(self, ref: SessionRef) -> bool:
        """Ask the store whether this worker still owns ``ref`` (extending it if so)."""
        try:
            lost = await self._store.renew_sessions(
                self._worker_id, [ref], self._options.session_lock_ms
            )
        except StoreError:
            logger.warning("could not verify session %s/%s", ref.instance_id, ref.session_id)
            return False
        return ref not in lost

    def attach(self, ref: SessionRef, run: Cancellable) -> SessionEntry:
        """An activity of ``ref`` starts on this worker (its fetch gave us the session's lease)."""
        entry = self._entries.get(ref)
        if entry is None:
            entry = SessionEntry(ref=ref, claimed_at=self._clock())
            self._entries[ref] = entry
            self._released_at.pop(ref, None)
            logger.info(
                "session claimed",
                extra={
                    "instance_id": ref.instance_id,
                    "session_id": ref.session_id,
                    "worker_id": self._worker_id,
                },
            )
        entry.active.add(run)
        entry.idle_since = None
        return entry

    def detach(self, entry: SessionEntry, run: Cancellable) -> None:
        """An activity of ``entry`` finished (in any way). A stale entry is left alone."""
        entry.active.discard(run)
        if not entry.active and self._entries.get(entry.ref) is entry:
            entry.idle_since = self._clock()

    def forget(self, lost: LostSessions) -> None:
        """The store says these are no longer ours: closed ones ended normally, others were lost."""
        for ref in lost:
            if ref in lost.closed:
                self._end(ref)
        self.lose([ref for ref in lost if ref not in lost.closed], "taken over by another worker")

    def _end(self, ref: SessionRef) -> None:
        entry = self._entries.pop(ref, None)
        if entry is None:
            return
        logger.info(
            "session ended (closed by its orchestration, or it finished); slot free",
            extra={
                "instance_id": ref.instance_id,
                "session_id": ref.session_id,
                "worker_id": self._worker_id,
            },
        )
        for run in list(entry.active):
            run.cancel(CancelCause.SESSION_CLOSED)

    def lose(self, refs: Iterable[SessionRef], reason: str) -> None:
        """The leases of ``refs`` are gone: cancel their activities here, forget the entries."""
        for ref in refs:
            entry = self._entries.pop(ref, None)
            if entry is None:
                continue
            level = logging.WARNING if entry.active else logging.INFO
            logger.log(
                level,
                "session lease lost (%s); cancelling %d in-flight activities",
                reason,
                len(entry.active),
                extra={
                    "instance_id": ref.instance_id,
                    "session_id": ref.session_id,
                    "worker_id": self._worker_id,
                },
            )
            for run in list(entry.active):
                run.cancel(CancelCause.SESSION_LEASE_LOST, reason)

    # -- periodic work -------------------------------------------------------------------------
    async def tick(self) -> None:
        """Release idle sessions past their timeout, then renew the rest."""
        now = self._clock()
        for ref, at in list(self._released_at.items()):
            if now - at > _RELEASE_MEMORY_S:
                del self._released_at[ref]
        idle_timeout = self._options.session_idle_timeout
        if idle_timeout is not None:
            expired = [
                e.ref
                for e in self._entries.values()
                if e.is_idle and e.idle_since is not None and now - e.idle_since >= idle_timeout
            ]
            if expired:
                await self._release(expired, "idle timeout")
        refs = list(self._entries)
        if not refs:
            return
        try:
            lost = await self._store.renew_sessions(
                self._worker_id, refs, self._options.session_lock_ms
            )
        except StoreError:
            logger.exception("session renewal failed; retrying next tick")
            return
        if lost:
            self.forget(lost)

    async def release_idle(self) -> None:
        """Release at once every owned session with no activity running here (shutdown)."""
        idle = [e.ref for e in self._entries.values() if e.is_idle]
        if idle:
            await self._release(idle, "shutdown")

    async def release_all(self) -> None:
        """Release every owned session (shutdown, after in-flight work ended or was handed back)."""
        refs = list(self._entries)
        if refs:
            await self._release(refs, "shutdown")

    async def _release(self, refs: list[SessionRef], reason: str) -> None:
        now = self._clock()
        for ref in refs:
            entry = self._entries.pop(ref, None)
            self._released_at[ref] = now
            if entry is not None:
                for run in list(entry.active):
                    run.cancel(CancelCause.SESSION_RELEASED, reason)
        try:
            await self._store.release_sessions(self._worker_id, refs, self._options.queues)
        except StoreError:
            logger.exception("releasing %d sessions failed; their leases will expire", len(refs))
            return
        for ref in refs:
            logger.info(
                "session released (%s)",
                reason,
                extra={
                    "instance_id": ref.instance_id,
                    "session_id": ref.session_id,
                    "worker_id": self._worker_id,
                },
            )
