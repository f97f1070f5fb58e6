"""Where a sync activity runs: the thread pool, or inline on the worker's event loop.

``@app.activity(inline=None)`` (the default) lets the worker decide by measuring: the first
``PROBE_RUNS`` calls of the activity run in the thread pool, and when every one of them took
under ``INLINE_MAX_S`` the activity runs inline from then on (no thread hop: ≈200 µs of worker
CPU less per call, measured on a chain of activities); a probe call over ``INLINE_MAX_S``, or
one inline call over ``INLINE_ABORT_S``, sends the activity back to the pool for good (per
worker process). ``inline=True`` runs it inline always, ``inline=False`` never. A call with a
timeout always runs in the pool, so the timeout can fire. Jobs and orchestration activities
follow the same rule (docs/jobs.md, docs/concepts.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["INLINE_ABORT_S", "INLINE_MAX_S", "PROBE_RUNS", "Raised", "Speed", "timed_call"]

PROBE_RUNS = 3
INLINE_MAX_S = 0.001
INLINE_ABORT_S = 0.02


class Speed:
    """How one sync activity runs on this worker: probed in the pool first, inline once
    measured fast (``inline``), or pinned to the pool."""

    __slots__ = ("inline", "pinned", "probes")

    def __init__(self, inline: bool | None = None) -> None:
        self.probes = 0
        self.inline = inline is True
        self.pinned = inline is not None  # decided by the registration: never measured

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


class Raised(Exception):
    """An exception of a ``timed_call``, with how long the call ran before it."""

    def __init__(self, exc: Exception, seconds: float) -> None:
        self.exc = exc
        self.seconds = seconds


def timed_call(fn: Callable[..., Any], ctx: Any, args: tuple[Any, ...]) -> tuple[float, Any]:
    """``(seconds, fn(ctx, *args))``; an exception comes out as ``Raised``."""
    t0 = time.perf_counter()
    try:
        value = fn(ctx, *args)
    except Exception as exc:
        raise Raised(exc, time.perf_counter() - t0) from exc
    return time.perf_counter() - t0, value
