"""Mocks and injected faults on activities, for ``TestEnvironment`` (docs/testing.md).

``ActivityOverrides`` holds what a test replaced or broke; ``OverridingApp`` is the user's
``App`` (its registries shared, never modified) whose ``get_activity`` applies them, which the
environment's workers serve. Workers look an activity up at each delivery, so a mock or a
fault applies to work already queued.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel

from durable_redis.core import ActivityDefinition, App
from durable_redis.core.registry import activity_metadata
from durable_redis.errors import ConfigurationError

__all__ = ["ActivityFault", "ActivityOverrides", "OverridingApp", "activity_name"]

MISSING: Any = object()
FaultKind = Literal["crash_after", "crash_at_start", "deliver_twice"]


def activity_name(target: str | Callable[..., Any]) -> str:
    """The registered name of an activity given by reference or by name."""
    return target if isinstance(target, str) else activity_metadata(target).name


@dataclasses.dataclass
class ActivityFault:
    """An injected fault on one activity; ``hits`` counts how often it fired."""

    activity: str
    kind: FaultKind
    times: int | None  # None: every delivery
    hits: int = 0

    def take(self) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


class ActivityOverrides:
    """The mocks and faults of one environment. ``kill(worker_id)`` kills a worker (it must be
    called on the event loop; ``bind()`` there first so threads can reach it)."""

    def __init__(self, kill: Callable[[str], None]) -> None:
        self._kill = kill
        self.mocks: dict[str, Any] = {}
        self.faults: list[ActivityFault] = []
        self._parked = threading.Event()  # sync activities "killed" with their worker wait here
        self._token: Any = None
        self._loop_thread = 0

    def bind(self) -> None:
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()

    def release(self) -> None:
        """Let the threads of killed sync activities end (the environment is closing)."""
        self._parked.set()

    @contextmanager
    def mock(
        self,
        activity: str | Callable[..., Any],
        replacement: Callable[..., Any] | None = None,
        *,
        returns: Any = MISSING,
        raises: BaseException | None = None,
    ) -> Iterator[None]:
        name = activity_name(activity)
        if replacement is None:
            if returns is MISSING and raises is None:
                raise ConfigurationError("mock_activity needs a replacement, returns= or raises=")

            def replacement(*_args: Any) -> Any:
                if raises is not None:
                    raise raises
                return returns

        previous = self.mocks.get(name, MISSING)
        self.mocks[name] = replacement
        try:
            yield
        finally:
            if previous is MISSING:
                self.mocks.pop(name, None)
            else:
                self.mocks[name] = previous

    def add_fault(
        self, activity: str | Callable[..., Any], kind: FaultKind, times: int | None
    ) -> ActivityFault:
        if times is not None and times < 1:
            raise ConfigurationError("times must be >= 1 (or None: every delivery)")
        fault = ActivityFault(activity_name(activity), kind, times)
        self.faults.append(fault)
        return fault

    def apply(self, definition: ActivityDefinition) -> ActivityDefinition:
        fn = self.mocks.get(definition.name, definition.fn)
        faulty = any(f.activity == definition.name for f in self.faults)
        if faulty:
            fn = self._faulty(fn, definition.name)
        if fn is definition.fn:
            return definition
        is_async = inspect.iscoroutinefunction(fn)
        # a faulted activity runs in the pool (its crash kills from an anyio worker thread)
        inline = None if is_async else False if faulty else definition.inline
        return dataclasses.replace(definition, fn=fn, is_async=is_async, inline=inline)

    def _take(self, name: str, kind: FaultKind) -> bool:
        return any(f.take() for f in self.faults if f.activity == name and f.kind == kind)

    def _not_local(self, name: str, *, on_loop: bool) -> None:
        """A local activity runs inside its turn's computation (inline on the loop, or in a
        helper thread of its own): no worker task to kill there."""
        from durable_redis.runtime._bridge import in_local_activity

        if in_local_activity():  # called by a turn (in a thread since inline=True exists)
            local = True
        elif on_loop:
            local = threading.get_ident() != self._loop_thread
        else:
            try:  # the dispatcher runs sync activities in anyio's worker threads
                anyio.from_thread.check_cancelled()
                local = False
            except RuntimeError:  # the loop's own thread, or a helper thread
                local = True
        if local:
            raise ConfigurationError(f"crash faults do not apply to local activity {name!r}")

    def _faulty(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        take, kill = self._take, self._kill
        if inspect.iscoroutinefunction(fn):

            async def die(worker_id: str) -> None:
                self._not_local(name, on_loop=True)
                kill(worker_id)
                await anyio.sleep_forever()  # the kill cancels this

            async def run_async(ctx: Any, *args: Any) -> Any:
                if take(name, "crash_at_start"):
                    await die(ctx.worker_id)
                value = await fn(ctx, *args)
                if take(name, "deliver_twice"):
                    value = await fn(ctx, *args)
                if take(name, "crash_after"):
                    await die(ctx.worker_id)
                return value

            return run_async

        def die_in_thread(worker_id: str) -> None:
            self._not_local(name, on_loop=False)
            anyio.from_thread.run_sync(kill, worker_id, token=self._token)
            self._parked.wait()  # a dead process's thread never returns

        def run_sync(ctx: Any, *args: Any) -> Any:
            if take(name, "crash_at_start"):
                die_in_thread(ctx.worker_id)
            value = fn(ctx, *args)
            if take(name, "deliver_twice"):
                value = fn(ctx, *args)
            if take(name, "crash_after"):
                die_in_thread(ctx.worker_id)
            return value

        return run_sync


class OverridingApp(App):
    """The user's App (same registries, shared) with a test's mocks and faults applied."""

    def __init__(self, app: App, overrides: ActivityOverrides) -> None:
        self.__dict__.update(app.__dict__)
        self._overrides = overrides

    def get_activity(self, name: str) -> ActivityDefinition:
        return self._overrides.apply(super().get_activity(name))
