"""Where a sync activity runs: the thread pool, or inline on the worker's event loop.

``@app.activity(inline=None)`` (the default) lets the worker decide by measuring: the first
``PROBE_RUNS`` calls of the activity run in the thread pool, and when every one of them took
under ``INLINE_MAX_S`` the activity runs inline from then on (no thread hop: ≈200 µs of worker
CPU less per call, measured on a chain of activities); a probe call over ``INLINE_MAX_S``, or
one inline call over ``INLINE_ABORT_S``, sends the activity back to the pool for good (per
worker process). ``inline=True`` runs it inline always, ``inline=False`` never. A call with a
timeout always runs in the pool, so the timeout can fire. Jobs and orchestration activities
follow the same rule (docs/jobs.md).

A call that cannot work on the event loop's thread (``ctx.append_stream``, which waits for the
loop; ``asyncio.run`` or ``anyio.from_thread`` in user code) raises there: such a call made
inline is run again in the pool at once (the same delivery) and the activity stays in the pool
for good (``off_loop_only``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread

logger = logging.getLogger(__name__)

__all__ = ["INLINE_ABORT_S", "INLINE_MAX_S", "PROBE_RUNS", "NeedsThread", "Speed", "off_loop_only"]

PROBE_RUNS = 3
INLINE_MAX_S = 0.001
INLINE_ABORT_S = 0.02
# what asyncio, uvloop and anyio raise for a call that needs to be off the event loop's thread
_LOOP_ERRORS = (
    "running event loop",
    "event loop is already running",
    "another loop is running",
    "AnyIO worker thread",
)


class NeedsThread(BaseException):
    """Raised by a runtime call that cannot run on the event loop's thread (``append_stream``
    from an activity called inline): the runtime runs the call again in the pool. A
    ``BaseException``, so the activity's own ``except Exception`` does not swallow it."""


def off_loop_only(exc: BaseException) -> bool:
    """Whether an inline call failed only because it ran on the event loop's thread."""
    if isinstance(exc, NeedsThread):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _LOOP_ERRORS)


class Speed:
    """How one sync activity runs on this worker: probed in the pool first, inline once
    measured fast (``inline``), or pinned to the pool."""

    __slots__ = ("inline", "pinned", "probes")

    def __init__(self, inline: bool | None = None) -> None:
        self.probes = 0
        self.inline = inline is True
        self.pinned = inline is not None  # decided by the registration: never measured

    def call_inline(
        self, fn: Callable[..., Any], ctx: Any, args: tuple[Any, ...], extra: Mapping[str, Any]
    ) -> tuple[bool, Any]:
        """``fn(ctx, *args)`` on the event loop's thread: ``(True, its value)``, or its
        exception. ``(False, None)``: it failed only because it ran there (``off_loop_only``),
        so the activity goes to the pool for good and the caller runs the call there now."""
        t0 = time.perf_counter()
        try:
            value = fn(ctx, *args)
        except BaseException as exc:
            if not off_loop_only(exc):
                self.record(time.perf_counter() - t0, inline=True)
                raise
            self.inline, self.pinned = False, True
            logger.info(
                "activity %s cannot run on the event loop (%s); it runs in the thread pool "
                "from now on",
                extra.get("activity_name"),
                exc,
                extra=dict(extra),
            )
            return False, None
        self.record(time.perf_counter() - t0, inline=True)
        return True, value

    async def call_in_pool(
        self,
        fn: Callable[..., Any],
        ctx: Any,
        args: tuple[Any, ...],
        limiter: anyio.CapacityLimiter,
    ) -> Any:
        """``fn(ctx, *args)`` in the thread pool, timed (a probe); abandoned on cancel."""
        try:
            seconds, value = await anyio.to_thread.run_sync(
                _timed_call, fn, ctx, args, abandon_on_cancel=True, limiter=limiter
            )
        except _Raised as raised:
            self.record(raised.seconds, inline=False)
            raise raised.exc from None
        self.record(seconds, inline=False)
        return value

    def record(self, seconds: float, *, inline: bool) -> None:
        if self.pinned:
            return
        if inline:
            if seconds > INLINE_ABORT_S:
                self.inline, self.pinned = False, True
            return
        if seconds > INLINE_MAX_S:
            self.pinned = True
            return
        self.probes += 1
        self.inline = self.probes >= PROBE_RUNS


class _Raised(Exception):
    """An exception of a ``_timed_call``, with how long the call ran before it."""

    def __init__(self, exc: Exception, seconds: float) -> None:
        self.exc = exc
        self.seconds = seconds


def _timed_call(fn: Callable[..., Any], ctx: Any, args: tuple[Any, ...]) -> tuple[float, Any]:
    """``(seconds, fn(ctx, *args))``; an exception comes out as ``_Raised``."""
    t0 = time.perf_counter()
    try:
        value = fn(ctx, *args)
    except Exception as exc:
        raise _Raised(exc, time.perf_counter() - t0) from exc
    return time.perf_counter() - t0, value
