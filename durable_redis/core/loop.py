"""A private asyncio event loop that only runs ready callbacks: the orchestration scheduler.

Orchestration code runs as ordinary asyncio tasks on this loop, so ``asyncio.gather``,
``asyncio.wait``, ``asyncio.TaskGroup`` and ``asyncio.timeout`` work. The loop has no selector and
no clock of its own:

* callbacks run strictly FIFO, so a replay runs them in the same order;
* ``time()`` is the orchestration's recorded time, and ``call_at``/``call_later`` become durable
  timers (this is how ``asyncio.timeout`` and ``asyncio.wait(timeout=...)`` work);
* every I/O entry point (sockets, executors, subprocesses, ``asyncio.sleep`` with a delay) raises
  :class:`ForbiddenCallError` naming the call;
* when no callback is ready the turn is over: the code waits for durable work.
"""

from __future__ import annotations

import asyncio
import asyncio.futures
import contextvars
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar, TypeVarTuple

from durable_redis.errors import DurableRedisError

__all__ = ["DeterministicLoop", "ForbiddenCallError", "TimerHost"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class ForbiddenCallError(DurableRedisError, RuntimeError):
    """Orchestration code tried real I/O or wall-clock waiting; do it in an activity instead."""


class TimerHost(Protocol):
    """The replay engine side of the loop: its clock and its durable timers."""

    def loop_time(self) -> float: ...

    def loop_timer(self, handle: asyncio.TimerHandle) -> None: ...

    def loop_timer_cancelled(self, handle: asyncio.TimerHandle) -> None: ...


_SLEEP_CALLBACK = getattr(asyncio.futures, "_set_result_unless_cancelled", None)


class DeterministicLoop(asyncio.AbstractEventLoop):
    """Runs orchestration tasks deterministically; see the module docstring."""

    def __init__(self, host: TimerHost) -> None:
        self._host = host
        self._ready: deque[asyncio.Handle] = deque()
        self._running = False
        self._closed = False
        self._halted = False
        self.unhandled: list[dict[str, Any]] = []
        # this loop's tasks: asyncio.all_tasks() would scan every task of every loop alive
        self.tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    # -- running --------------------------------------------------------------------------------
    def run_until_idle(self) -> None:
        """Run ready callbacks until none is left (or :meth:`halt` is called)."""
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        self._running = True
        try:
            while self._ready and not self._halted:
                handle = self._ready.popleft()
                if not handle.cancelled():
                    handle._run()
        finally:
            self._running = False
            asyncio.events._set_running_loop(previous)

    def halt(self) -> None:
        """Stop running callbacks for good (the orchestration reached a terminal state)."""
        self._halted = True

    @property
    def halted(self) -> bool:
        return self._halted

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()

    def get_debug(self) -> bool:
        return False

    def set_debug(self, enabled: bool) -> None:
        pass

    # -- callbacks ------------------------------------------------------------------------------
    def call_soon(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        raise ForbiddenCallError(
            "call_soon_threadsafe() is not allowed in an orchestration: threads are I/O; "
            "use an activity"
        )

    def call_later(
        self,
        delay: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if callback is _SLEEP_CALLBACK:
            raise ForbiddenCallError(
                "asyncio.sleep() with a positive delay is not allowed in an orchestration: "
                "use `await ctx.sleep(...)` (a durable timer)"
            )
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        self._host.loop_timer(handle)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._host.loop_timer_cancelled(handle)

    def schedule_handle(self, handle: asyncio.Handle) -> None:
        """Make a (timer) handle ready: its durable timer fired."""
        self._ready.append(handle)

    def time(self) -> float:
        return self._host.loop_time()

    # -- futures and tasks ----------------------------------------------------------------------
    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = asyncio.Task(coro, loop=self, name=name, context=context)
        self.tasks.add(task)
        return task

    def get_task_factory(self) -> None:
        return None

    def set_task_factory(self, factory: object) -> None:
        raise ForbiddenCallError("set_task_factory() is not allowed in an orchestration")

    # -- errors ---------------------------------------------------------------------------------
    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # Destroyed pending tasks and never-retrieved exceptions end up here; they are normal
        # when a turn ends with code waiting. Kept for debugging, never logged.
        self.unhandled.append(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.unhandled.append(context)

    def get_exception_handler(self) -> None:
        return None

    def set_exception_handler(self, handler: object) -> None:
        raise ForbiddenCallError("set_exception_handler() is not allowed in an orchestration")


_FORBIDDEN = (
    "run_forever",
    "run_until_complete",
    "stop",
    "shutdown_asyncgens",
    "shutdown_default_executor",
    "run_in_executor",
    "set_default_executor",
    "getaddrinfo",
    "getnameinfo",
    "create_connection",
    "create_server",
    "sendfile",
    "start_tls",
    "create_unix_connection",
    "create_unix_server",
    "connect_accepted_socket",
    "create_datagram_endpoint",
    "connect_read_pipe",
    "connect_write_pipe",
    "subprocess_shell",
    "subprocess_exec",
    "add_reader",
    "remove_reader",
    "add_writer",
    "remove_writer",
    "sock_recv",
    "sock_recv_into",
    "sock_recvfrom",
    "sock_recvfrom_into",
    "sock_sendall",
    "sock_sendto",
    "sock_connect",
    "sock_accept",
    "sock_sendfile",
    "add_signal_handler",
    "remove_signal_handler",
)


def _forbidden(name: str) -> Callable[..., Any]:
    def method(self: DeterministicLoop, *args: Any, **kwargs: Any) -> Any:
        raise ForbiddenCallError(
            f"loop.{name}() is not allowed in an orchestration: orchestrations must be "
            "deterministic and do no I/O; move it into an activity"
        )

    method.__name__ = name
    return method


for _name in _FORBIDDEN:
    setattr(DeterministicLoop, _name, _forbidden(_name))
