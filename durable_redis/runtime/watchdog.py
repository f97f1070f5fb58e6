"""The turn watchdog: interrupt an orchestration turn that overruns ``turn_timeout``.

Small turns run inline on the worker's event loop (``runtime.orchestrations``), so orchestration
code that spins (``while True: pass``) would freeze the whole worker: no lease renewal, no
activity, no heartbeat. One daemon thread per worker watches the turns in progress; when one
has run longer than ``turn_timeout`` it raises :class:`TurnInterrupted` into the thread running
it (``PyThreadState_SetAsyncExc``: delivered at the next bytecode boundary of that thread, so any
pure-Python loop is interrupted; a call blocked in C, such as ``time.sleep(60)``, only when it
returns). :func:`TurnWatchdog.run` turns the interruption into :class:`TurnTimeoutError`, and the
dispatcher holds the instance with that reason (docs/reliability.md, "Turn watchdog").

``TurnInterrupted`` derives from ``KeyboardInterrupt`` on purpose: asyncio's task and handle
machinery (which core's deterministic loop reuses) swallows any other ``BaseException`` raised
in a callback and carries on; these two it re-raises, so the interruption unwinds the whole turn.

Cost per turn: two uncontended lock round trips and a dict update (about 1 us, measured in
docs/reliability.md); the thread wakes every ``min(turn_timeout / 4, 0.25 s)``.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from durable_redis.errors import TurnTimeoutError

__all__ = ["TurnInterrupted", "TurnWatchdog"]

logger = logging.getLogger(__name__)

_R = TypeVar("_R")
_REFIRE_MIN_S = 1.0  # least time before a turn still running is interrupted again
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int


class TurnInterrupted(KeyboardInterrupt):
    """Raised into a turn that overran (internal: :meth:`TurnWatchdog.run` converts it)."""


class _Watch:
    __slots__ = ("deadline", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = 0  # interruptions raised into this turn


class TurnWatchdog:
    """Interrupts turns running longer than ``timeout_s`` (one watcher thread, started lazily)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}  # thread ident -> its turn in progress
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.interrupted = 0  # turns interrupted so far

    def run(self, fn: Callable[..., _R], *args: Any) -> _R:
        """``fn(*args)`` under the watchdog; :class:`TurnTimeoutError` if it overran."""
        ident = threading.get_ident()
        started = time.monotonic()
        try:
            try:
                self._start(ident, started)
                return fn(*args)
            finally:
                self._end(ident)
        except TurnInterrupted:
            # delivered before _end took the lock (or even before _start returned, when the
            # thread lost the CPU past the timeout): the watch may still be there. Once _end
            # ran (under the lock) nothing can be pending any more; a repeat comes at least
            # _REFIRE_MIN_S after the first but may land in this _end: run it again then
            for _ in range(3):
                try:
                    self._end(ident)
                    break
                except TurnInterrupted:
                    continue
            elapsed = time.monotonic() - started
            raise TurnTimeoutError(
                f"the turn ran longer than turn_timeout={self.timeout_s:g}s "
                f"(interrupted after {elapsed:.2f}s): orchestration code must not block or spin",
                elapsed_s=elapsed,
            ) from None

    def _start(self, ident: int, now: float) -> None:
        watch = _Watch(now + self.timeout_s)
        with self._lock:
            self._watches[ident] = watch
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch_loop, name="durable-redis-turn-watchdog", daemon=True
                )
                self._thread.start()

    def _end(self, ident: int) -> None:
        with self._lock:
            watch = self._watches.pop(ident, None)
            if watch is not None and watch.fired:
                # an interruption raised but not delivered yet (the turn was ending): drop it,
                # so it cannot surface in the worker's own code after the turn
                _set_async_exc(ident, ctypes.py_object())

    def _watch_loop(self) -> None:
        tick = min(self.timeout_s / 4, 0.25)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                for ident, watch in self._watches.items():
                    if now < watch.deadline:
                        continue
                    watch.fired += 1
                    # again later if the code swallowed it (except BaseException)
                    watch.deadline = now + max(self.timeout_s, _REFIRE_MIN_S)
                    self.interrupted += watch.fired == 1
                    _set_async_exc(ident, ctypes.py_object(TurnInterrupted))
                    if watch.fired > 1:
                        logger.error(
                            "a turn still runs after %d interruptions (it catches "
                            "BaseException?); interrupting it again",
                            watch.fired - 1,
                        )

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=1.0)
