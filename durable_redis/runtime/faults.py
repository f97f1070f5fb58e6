"""Whose fault a crash is: the instance's (it counts toward poison) or the worker's (it does not).

Poison (``max_attempts``) is for an instance or work item whose own code kills its turns: the
attempt is counted by the fetch, so a worker process that dies or stalls mid-turn counts against
everything it held. An exception the worker catches is judged here instead:

- raised by the worker's own machinery (talking to Redis, encoding a commit, a broken app or
  codec outside the user's code): the **worker's** fault. The item is handed back without
  counting the attempt, and the dispatcher pauses, with exponential back-off, logging at ERROR;
- raised out of the turn computation (core replaying the user's orchestration): the
  **instance's** fault, counted, unless the same crash (exception type and place) already hit
  another instance since the last turn that succeeded. A crash that hits every instance alike is
  the worker's (a bad deploy, a broken codec), so once it has hit a second instance it is not
  counted against any (the first one keeps the attempts counted before that) and the dispatcher
  backs off.

One ``FaultTracker`` per dispatcher; a turn or activity that succeeds resets it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable

import anyio

__all__ = ["FaultTracker", "crash_signature"]

logger = logging.getLogger(__name__)

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 60.0


def crash_signature(exc: BaseException) -> str:
    """The exception's type and where it was raised (innermost frame), not its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__module__}.{type(exc).__qualname__}@{where}"


class FaultTracker:
    """Judges caught crashes of one dispatcher and holds its back-off."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hit: dict[str, set[str]] = {}  # signature -> instances it hit, since a success
        self._faults = 0  # worker faults since the last success
        self._paused_until = 0.0

    @property
    def worker_faults(self) -> int:
        return self._faults

    def code_crashed(self, key: str, exc: BaseException) -> bool:
        """A crash out of the turn computation of ``key``; True: count it against ``key``."""
        if len(self._hit) > 1000:  # many kinds of crashes and no success: start over
            self._hit.clear()
        hit = self._hit.setdefault(crash_signature(exc), set())
        if len(hit) < 2:  # two instances make it "alike"; more need not be remembered
            hit.add(key)
        if hit == {key}:
            return True
        self.worker_fault()
        return False

    def worker_fault(self) -> float:
        """The worker's own fault: never counted; pause the dispatcher. Returns the pause (s)."""
        now = self._clock()
        if now < self._paused_until:  # the same burst (concurrent turns): no escalation
            return self._paused_until - now
        self._faults += 1
        delay = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2.0 ** min(self._faults - 1, 16))
        self._paused_until = now + delay
        return delay

    def succeeded(self) -> None:
        if self._faults or self._hit:
            self._hit.clear()
            self._faults = 0
            self._paused_until = 0.0

    def pause_remaining(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    async def wait_if_paused(self, stopping: anyio.Event) -> None:
        """Sleep out the back-off (a stop ends it early)."""
        remaining = self.pause_remaining()
        if remaining > 0:
            with anyio.move_on_after(remaining):
                await stopping.wait()
