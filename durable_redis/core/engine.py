"""The replay engine: (history, new messages) -> one turn's result. Pure and deterministic.

A turn replays the current execution's history from the start: every input event (start,
completion, raised event, cancel request) is applied in order and the orchestration code runs
on the :class:`DeterministicLoop` until it waits again; every command the code emits must match
the next recorded command event. Then each accepted new message becomes an input event and the
code runs on; the commands it emits now are the turn's new events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from types import CodeType, FrameType
from typing import Any, NoReturn, TypeVar

from durable_redis.core import events as ev
from durable_redis.core.codec import Codec
from durable_redis.core.context import (
    MAX_SESSION_ID_LENGTH,
    NO_ROUTE,
    OrchestrationContext,
    Route,
)
from durable_redis.core.loop import DeterministicLoop
from durable_redis.core.messages import failure_from_exception
from durable_redis.core.registry import DEFAULT_MAX_HISTORY_EVENTS, App
from durable_redis.core.state import WorkState
from durable_redis.errors import (
    ActivityFailedError,
    ActivityTimeoutError,
    ChildOrchestrationFailedError,
    CodecError,
    FailureDetails,
    NondeterminismError,
)
from durable_redis.ids import SESSION, valid_id

__all__ = ["ReplayEngine", "Terminated"]

E = TypeVar("E", bound=ev.HistoryEvent)


class Terminated(BaseException):
    """Unwinds orchestration code once the execution reached a terminal state.

    Raised by ``continue_as_new`` and by fatal verdicts (nondeterminism, bad session use). It
    derives from ``BaseException`` so ``except Exception:`` in user code cannot swallow it.
    """


def _same_command(recorded: ev.HistoryEvent, actual: ev.HistoryEvent) -> bool:
    if type(recorded) is not type(actual):
        return False
    match recorded:
        case ev.ActivityScheduled():
            assert isinstance(actual, ev.ActivityScheduled)
            return (recorded.name, recorded.input, recorded.session_id) == (
                actual.name,
                actual.input,
                actual.session_id,
            )
        case ev.EventSubscribed():
            assert isinstance(actual, ev.EventSubscribed)
            return recorded.name == actual.name
        case ev.SubOrchestrationScheduled() | ev.DetachedOrchestrationStarted():
            assert isinstance(
                actual, ev.SubOrchestrationScheduled | ev.DetachedOrchestrationStarted
            )
            return (recorded.name, recorded.instance_id, recorded.input) == (
                actual.name,
                actual.instance_id,
                actual.input,
            )
        case ev.SessionOpened() | ev.SessionClosed():
            assert isinstance(actual, ev.SessionOpened | ev.SessionClosed)
            return recorded.session_id == actual.session_id
        case ev.ActivityCancelRequested():
            assert isinstance(actual, ev.ActivityCancelRequested)
            return recorded.activity_id == actual.activity_id
        case ev.SubOrchestrationCancelRequested():
            assert isinstance(actual, ev.SubOrchestrationCancelRequested)
            return recorded.scheduled_id == actual.scheduled_id
        case ev.OrchestrationFailed():
            assert isinstance(actual, ev.OrchestrationFailed)
            return recorded.failure.kind == actual.failure.kind
        case ev.EventSent():
            assert isinstance(actual, ev.EventSent)
            return (recorded.instance_id, recorded.name, recorded.data) == (
                actual.instance_id,
                actual.name,
                actual.data,
            )
        case ev.QueueDequeued():
            assert isinstance(actual, ev.QueueDequeued)
            return recorded.queue == actual.queue
        case ev.ValueSet():
            assert isinstance(actual, ev.ValueSet)
            return recorded.key == actual.key
        case ev.UpdateCompleted():
            assert isinstance(actual, ev.UpdateCompleted)
            return recorded.update_id == actual.update_id
        case ev.PatchMarker():
            assert isinstance(actual, ev.PatchMarker)
            return recorded.change_id == actual.change_id
        case _:  # timers (due time may change), custom status, completed, continued-as-new
            return True


class ReplayEngine:
    """One turn of one instance. Use :func:`durable_redis.core.run_turn`."""

    def __init__(
        self,
        app: App,
        history: Sequence[ev.HistoryEvent],
        *,
        now_ms: int,
        codec: Codec,
        max_sessions: int,
    ) -> None:
        self.app = app
        self.codec = codec
        self.max_sessions = max_sessions
        self.events: list[ev.HistoryEvent] = list(history)
        self.base_len = len(self.events)
        self.cursor = 0
        self.now_ms = now_ms
        self.current_ms = now_ms
        self.replaying = False
        self.loop = DeterministicLoop(self)  # type: ignore[abstract]
        self.state = WorkState()
        for event in self.events:
            self.state.apply(event)
        self.ctx: OrchestrationContext | None = None
        self.main: asyncio.Task[Any] | None = None
        self.terminal: ev.HistoryEvent | None = None
        self.nondeterminism: NondeterminismError | None = None
        # code-side bookkeeping, rebuilt by the replay
        self.waiters: dict[int, Callable[[ev.HistoryEvent], None]] = {}
        self.pending_cancels: dict[int, tuple[str, str]] = {}  # source id -> (kind, reason)
        self.activity_sessions: dict[int, str] = {}  # in-flight activities -> session ("" none)
        self.subscriptions: dict[str, deque[tuple[asyncio.Future[Any], Any]]] = {}
        self.buffered: dict[str, deque[bytes]] = {}
        self.loop_timers: dict[int, asyncio.Future[None]] = {}  # id(TimerHandle) -> timer
        self.open_sessions: set[str] = set()
        self.session_queues: dict[str, str] = {}  # open session -> its queue, once known
        self.last_activity_id = 0  # event id of the newest ActivityScheduled command
        # talking to running orchestrations (docs/messaging.md)
        self.max_events: int = getattr(app, "max_history_events", DEFAULT_MAX_HISTORY_EVENTS)
        self.suggest_at: int = getattr(app, "continue_as_new_suggested_at", self.max_events)
        self.queues: dict[str, deque[bytes]] = {}  # queue events not dequeued yet, in order
        self.queue_waiters: dict[str, deque[tuple[asyncio.Future[Any], Any]]] = {}
        self.value_keys: set[str] = set()
        self.update_handlers: dict[str, tuple[Callable[..., Any], Callable[..., Any] | None]] = {}
        self.updates_done: list[tuple[str, bytes | None, FailureDetails | None]] = []
        self.update_replies: list[tuple[str, FailureDetails]] = []  # rejected: not recorded
        self.late_messages: list[Any] = []  # queue events / updates after continue-as-new
        # W3C trace context of this turn's span, stamped on the work it schedules (not compared
        # on replay: a replayed command keeps the one recorded)
        self.trace: dict[str, str] | None = None
        self.patches: dict[str, bool] = {}  # change id -> what patched() answered (sticks)
        self.past_reset = False  # the code runs past an ExecutionReset (default_id)

    # -- positions ------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.terminal is not None

    @property
    def is_replaying(self) -> bool:
        return self.replaying

    @property
    def default_id(self) -> str:
        """The part of a default child or detached orchestration id that makes it unique:
        the next event id; from a reset point on, ``<execution>.<event id>``, so the new
        execution never takes an id the execution it replaced used (docs/deploying.md)."""
        at_reset = self.cursor < len(self.events) and isinstance(
            self.events[self.cursor], ev.ExecutionReset
        )
        if (self.past_reset or at_reset) and self.state.started is not None:
            # at the reset event, the command about to pass it gets the id after it
            event_id = self.next_event_id + (1 if at_reset else 0)
            return f"{self.state.started.execution_id}.{event_id}"
        return str(self.next_event_id)

    @property
    def next_event_id(self) -> int:
        if self.cursor < len(self.events):
            return self.events[self.cursor].event_id
        return len(self.events) + 1

    # -- recording ------------------------------------------------------------------------------
    def command(self, cls: type[E], **fields: Any) -> E:
        """Record a command: match it against history on replay, append it otherwise."""
        if self.finished:
            raise Terminated
        self._pass_reset()
        candidate = cls(event_id=self.next_event_id, timestamp_ms=self.current_ms, **fields)
        if self.cursor < len(self.events):
            recorded = self.events[self.cursor]
            if isinstance(recorded, ev.INPUT_EVENTS) or not _same_command(recorded, candidate):
                self.diverged(recorded=ev.describe_event(recorded), actual=candidate)
            assert isinstance(recorded, cls)
            self.cursor += 1
            return recorded
        if self.replaying:
            self.diverged(recorded="the end of the recorded history", actual=candidate)
        if cls not in ev.TERMINAL_EVENTS and len(self.events) >= self.max_events:
            self.history_limit()
        self.events.append(candidate)
        self.state.apply(candidate)
        self.cursor += 1
        return candidate

    def patched(self, change_id: str, *, deprecated: bool) -> bool:
        """``ctx.patched`` / ``ctx.deprecate_patch``: True where the history has this change's
        marker here, or the code runs past the recorded history (a new step: the marker is
        recorded, unless ``deprecated``); False on a replay of history recorded without it
        (``deprecated``: True, the old path is gone). The first answer sticks per execution."""
        known = self.patches.get(change_id)
        if known is not None:
            return known
        if self.finished:
            raise Terminated
        self._pass_reset()
        recorded = self.events[self.cursor] if self.cursor < len(self.events) else None
        if isinstance(recorded, ev.PatchMarker) and recorded.change_id == change_id:
            self.cursor += 1
            answer = True
        elif self.replaying or deprecated:
            answer = deprecated
        else:
            self.command(ev.PatchMarker, change_id=change_id)
            answer = True
        self.patches[change_id] = answer
        return answer

    def _pass_reset(self) -> None:
        """A command meeting an ``ExecutionReset`` (the point an operator reset the instance
        to) passes over it: the commands the code issues from there on are the new
        execution's own. Reached as the last recorded event, the code runs live from here."""
        if self.cursor < len(self.events) and isinstance(
            self.events[self.cursor], ev.ExecutionReset
        ):
            self.current_ms = self.events[self.cursor].timestamp_ms
            self.cursor += 1
            self.past_reset = True
            if self.cursor >= self.base_len:
                self.replaying = False

    def diverged(self, *, recorded: str, actual: ev.HistoryEvent | str) -> NoReturn:
        """The code no longer matches the history: fail the orchestration (uncatchable)."""
        position = self.cursor + 1
        actual_text = actual if isinstance(actual, str) else ev.describe_event(actual)
        instance_id = self.ctx.instance_id if self.ctx is not None else ""
        source = _user_frame(sys._getframe(1))
        if source is None and self.main is not None:  # it waits: where
            source = _suspended_at(self.main.get_coro())
        error = NondeterminismError(
            f"orchestration {instance_id!r} no longer matches its history at event {position}: "
            f"recorded {recorded}, but the code now did {actual_text}"
            + (f" (at {source})" if source else ""),
            instance_id=instance_id,
            position=position,
            recorded=recorded,
            actual=actual_text,
            source=source,
        )
        self.nondeterminism = error
        failure = FailureDetails("nondeterminism", "NondeterminismError", str(error))
        event = ev.OrchestrationFailed(
            event_id=len(self.events) + 1, timestamp_ms=self.now_ms, failure=failure
        )
        self.events.append(event)
        self.state.apply(event)
        self.terminal = event
        self.loop.halt()
        raise Terminated

    def terminate(self, cls: type[E], **fields: Any) -> NoReturn:
        event = self.command(cls, **fields)
        self.terminal = event
        self.loop.halt()
        raise Terminated

    def history_limit(self) -> NoReturn:
        self.fail(
            "history_limit",
            "HistoryLimitExceededError",
            f"the execution reached max_history_events ({self.max_events}); continue as new "
            "when ctx.continue_as_new_suggested turns true",
        )

    def fail(self, kind: str, type_name: str, message: str) -> NoReturn:
        self.terminate(
            ev.OrchestrationFailed,
            failure=FailureDetails(kind=kind, type_name=type_name, message=message),
        )

    # -- driving --------------------------------------------------------------------------------
    def replay(self) -> None:
        """Re-run the code over the recorded history."""
        self.replaying = True
        try:
            while self.cursor < self.base_len and not self.finished:
                event = self.events[self.cursor]
                if not isinstance(event, ev.INPUT_EVENTS):
                    try:
                        self.diverged(
                            recorded=ev.describe_event(event), actual="nothing (it is waiting)"
                        )
                    except Terminated:
                        break
                self.cursor += 1
                self.current_ms = event.timestamp_ms
                self.deliver(event)
        finally:
            self.replaying = False

    def add_input(self, event: ev.HistoryEvent) -> None:
        """Append a new input event (from a message) and run the code on it."""
        if len(self.events) >= self.max_events and not self.finished:
            self.current_ms = self.now_ms
            try:
                self.history_limit()
            except Terminated:
                return
        self.events.append(event)
        self.state.apply(event)
        self.cursor += 1
        self.current_ms = self.now_ms
        self.deliver(event)

    def deliver(self, event: ev.HistoryEvent) -> None:
        try:
            self._apply_input(event)
        except Terminated:
            return
        self.run_code()

    def run_code(self) -> None:
        self.loop.run_until_idle()
        if self.finished:
            return
        try:
            for source_id in sorted(self.pending_cancels):
                kind, reason = self.pending_cancels.pop(source_id)
                if kind == "activity":
                    self.command(ev.ActivityCancelRequested, activity_id=source_id, reason=reason)
                elif kind == "child":
                    self.command(
                        ev.SubOrchestrationCancelRequested, scheduled_id=source_id, reason=reason
                    )
                # timers: nothing to record; a late TimerFired resolves nothing
            while self.updates_done:
                update_id, result, failure = self.updates_done.pop(0)
                self.command(
                    ev.UpdateCompleted, update_id=update_id, result=result, failure=failure
                )
            if self.main is not None and self.main.done():
                self._finish_main(self.main)
        except Terminated:
            return

    def _apply_input(self, event: ev.HistoryEvent) -> None:
        match event:
            case ev.OrchestrationStarted():
                self._start(event)
            case ev.ActivityCompleted(activity_id=source) | ev.TimerFired(timer_id=source):
                self._resolve(source, event)
            case ev.ActivityFailed(activity_id=source, failure=failure):
                if failure.kind == "poison":
                    self.terminate(ev.OrchestrationFailed, failure=failure)
                self._resolve(source, event)
            case (
                ev.SubOrchestrationCompleted(scheduled_id=source)
                | ev.SubOrchestrationFailed(scheduled_id=source)
            ):
                self._resolve(source, event)
            case ev.EventRaised():
                self._event_raised(event)
            case ev.QueueEventRaised():
                self._queue_event(event.queue, event.data)
            case ev.UpdateReceived():
                self._run_update(event)
            case ev.OrchestrationCancelRequested(reason=reason):
                self.fail("cancelled", "OrchestrationCancelled", reason or "cancel requested")
            case ev.ExecutionReset():
                self.past_reset = True  # met while the code waits: nothing to resolve
            case _:  # pragma: no cover - replay() only delivers input events
                raise AssertionError(f"not an input event: {event!r}")

    def _start(self, started: ev.OrchestrationStarted) -> None:
        definition = self.app.get_orchestration(started.name, started.version, exact=True)
        self.ctx = OrchestrationContext(self, started)
        self.open_sessions = set(started.sessions)
        self.value_keys = set(started.value_keys or ())
        for queue, data in zip(started.queue_names or (), started.queue_data or (), strict=True):
            self.queues.setdefault(queue, deque()).append(data)
        try:
            value = self.decode(started.input, definition.input_type)
        except CodecError as exc:
            self.terminate(ev.OrchestrationFailed, failure=failure_from_exception(exc))
        args = (self.ctx, value) if definition.takes_input else (self.ctx,)
        self.main = self.loop.create_task(
            definition.fn(*args), name=f"orchestration:{started.name}"
        )

    def _finish_main(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self.fail("application", "CancelledError", "the orchestration task was cancelled")
        exc = task.exception()
        if exc is None:
            try:
                output = self.codec.encode(task.result())
            except CodecError as error:
                self.terminate(ev.OrchestrationFailed, failure=failure_from_exception(error))
            self.terminate(ev.OrchestrationCompleted, output=output)
        self.terminate(ev.OrchestrationFailed, failure=failure_from_exception(exc))

    def decode(self, data: bytes, type_hint: Any) -> Any:
        return None if not data else self.codec.decode(data, type_hint)

    # -- durable work ---------------------------------------------------------------------------
    def _watch(
        self,
        kind: str,
        source_id: int,
        on_event: Callable[[ev.HistoryEvent], None],
        future: asyncio.Future[Any],
    ) -> None:
        """Resolve ``future`` from the completion of ``source_id``; record it if abandoned."""
        self.waiters[source_id] = on_event

        def on_done(f: asyncio.Future[Any]) -> None:
            if f.cancelled() and source_id in self.waiters:  # still in flight: abandoned
                del self.waiters[source_id]
                self.activity_sessions.pop(source_id, None)
                self.pending_cancels[source_id] = (kind, "abandoned")

        future.add_done_callback(on_done)

    def _resolve(self, source_id: int, event: ev.HistoryEvent) -> None:
        waiter = self.waiters.pop(source_id, None)
        if waiter is not None:
            waiter(event)

    def schedule_activity(
        self,
        name: str,
        payload: bytes,
        session: str | None,
        attempt: int,
        timeout_ms: int | None,
        result_type: Any,
        first_attempt_id: int | None = None,
        local: bool = False,
        route: Route = NO_ROUTE,
    ) -> asyncio.Future[Any]:
        queue, priority, flow_key, flow = NO_ROUTE if local else route
        event = self.command(
            ev.ActivityScheduled,
            name=name,
            input=payload,
            session_id=session,
            attempt=attempt,
            timeout_ms=timeout_ms,
            first_attempt_id=first_attempt_id,
            trace=self.trace,
            local=True if local else None,
            queue=queue,
            priority=priority,
            flow_key=flow_key,
            flow=flow,
        )
        if session and session not in self.session_queues:
            self.session_queues[session] = event.queue or "default"
        future: asyncio.Future[Any] = self.loop.create_future()
        source_id = event.event_id
        self.last_activity_id = source_id
        self.activity_sessions[source_id] = session or ""

        def on_event(done: ev.HistoryEvent) -> None:
            self.activity_sessions.pop(source_id, None)
            if future.done():  # pragma: no cover - a done future has no waiter left
                return
            if isinstance(done, ev.ActivityCompleted):
                try:
                    future.set_result(self.decode(done.result, result_type))
                except CodecError as exc:
                    future.set_exception(exc)
            elif isinstance(done, ev.ActivityFailed):
                cls = (
                    ActivityTimeoutError if done.failure.kind == "timeout" else ActivityFailedError
                )
                future.set_exception(cls(f"activity {name!r} failed: {done.failure}", done.failure))

        self._watch("activity", source_id, on_event, future)
        return future

    def create_timer(self, fire_at_ms: int) -> asyncio.Future[None]:
        event = self.command(ev.TimerCreated, fire_at_ms=fire_at_ms)
        future: asyncio.Future[None] = self.loop.create_future()

        def on_event(done: ev.HistoryEvent) -> None:
            future.set_result(None)

        self._watch("timer", event.event_id, on_event, future)
        return future

    def wait_for_event(self, name: str, result_type: Any) -> asyncio.Future[Any]:
        self.command(ev.EventSubscribed, name=name)
        future: asyncio.Future[Any] = self.loop.create_future()
        buffered = self.buffered.get(name)
        if buffered:
            self._set_decoded(future, buffered.popleft(), result_type)
        else:
            self.subscriptions.setdefault(name, deque()).append((future, result_type))
        return future

    def _event_raised(self, event: ev.EventRaised) -> None:
        waiting = self.subscriptions.get(event.name)
        while waiting:
            future, result_type = waiting.popleft()
            if not future.done():
                self._set_decoded(future, event.data, result_type)
                return
        self.buffered.setdefault(event.name, deque()).append(event.data)

    def _set_decoded(self, future: asyncio.Future[Any], data: bytes, result_type: Any) -> None:
        try:
            future.set_result(self.decode(data, result_type))
        except CodecError as exc:
            future.set_exception(exc)

    # -- queues, values, updates, events to others (docs/messaging.md) -------------------------
    def dequeue_event(self, queue: str, result_type: Any) -> asyncio.Future[Any]:
        self.command(ev.QueueDequeued, queue=queue)
        future: asyncio.Future[Any] = self.loop.create_future()
        buffered = self.queues.get(queue)
        if buffered:
            self._set_decoded(future, buffered.popleft(), result_type)
        else:
            self.queue_waiters.setdefault(queue, deque()).append((future, result_type))
        return future

    def _queue_event(self, queue: str, data: bytes) -> None:
        waiting = self.queue_waiters.get(queue)
        while waiting:
            future, result_type = waiting.popleft()
            if not future.done():  # a waiter given up (when_any loser) takes nothing
                self._set_decoded(future, data, result_type)
                return
        self.queues.setdefault(queue, deque()).append(data)

    def unconsumed_queue_events(self) -> list[tuple[str, bytes]]:
        """Queue events no dequeue took, oldest first in each queue (carried over
        continue-as-new)."""
        return [(queue, data) for queue, items in self.queues.items() for data in items]

    def accept_update(self, update_id: str, name: str, data: bytes) -> bool:
        """Run the validator of a new update (before anything is recorded); False = rejected."""
        if update_id in self.state.update_ids:
            return False  # already applied in this execution: a duplicate
        handler = self.update_handlers.get(name)
        if handler is None:
            self.update_replies.append(
                (
                    update_id,
                    FailureDetails("rejected", "UpdateRejectedError", f"no handler {name!r}"),
                )
            )
            return False
        validator = handler[1]
        if validator is not None:
            try:
                validator(self.decode(data, Any))
            except Exception as exc:  # the validator's verdict
                self.update_replies.append(
                    (update_id, failure_from_exception(exc, kind="rejected"))
                )
                return False
        return True

    def _run_update(self, event: ev.UpdateReceived) -> None:
        handler = self.update_handlers.get(event.name)
        update_id = event.update_id

        async def run() -> Any:
            if handler is None:
                raise LookupError(f"no update handler {event.name!r}")
            value = handler[0](self.decode(event.input, Any))
            if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
                value = await value
            return value

        def done(task: asyncio.Task[Any]) -> None:
            if task.cancelled():
                failure = FailureDetails("application", "CancelledError", "update cancelled")
                self.updates_done.append((update_id, None, failure))
                return
            exc = task.exception()
            if exc is not None:
                self.updates_done.append((update_id, None, failure_from_exception(exc)))
                return
            try:
                self.updates_done.append((update_id, self.codec.encode(task.result()), None))
            except CodecError as error:
                self.updates_done.append((update_id, None, failure_from_exception(error)))

        task = self.loop.create_task(run(), name=f"update:{event.name}")
        task.add_done_callback(done)

    def schedule_child(
        self, name: str, version: str, child_id: str, payload: bytes, result_type: Any
    ) -> asyncio.Future[Any]:
        event = self.command(
            ev.SubOrchestrationScheduled,
            name=name,
            version=version,
            instance_id=child_id,
            input=payload,
            trace=self.trace,
        )
        future: asyncio.Future[Any] = self.loop.create_future()

        def on_event(done: ev.HistoryEvent) -> None:
            if isinstance(done, ev.SubOrchestrationCompleted):
                try:
                    future.set_result(self.decode(done.output, result_type))
                except CodecError as exc:
                    future.set_exception(exc)
            elif isinstance(done, ev.SubOrchestrationFailed):
                message = f"sub-orchestration {name!r} ({child_id}) failed: {done.failure}"
                future.set_exception(ChildOrchestrationFailedError(message, done.failure))

        self._watch("child", event.event_id, on_event, future)
        return future

    # -- loop timers (asyncio.timeout, asyncio.wait(timeout=...)) -------------------------------
    def loop_time(self) -> float:
        return self.current_ms / 1000

    def loop_timer(self, handle: asyncio.TimerHandle) -> None:
        future = self.create_timer(round(handle.when() * 1000))
        self.loop_timers[id(handle)] = future

        def fire(f: asyncio.Future[None]) -> None:
            self.loop_timers.pop(id(handle), None)
            if not f.cancelled() and not handle.cancelled():
                self.loop.schedule_handle(handle)

        future.add_done_callback(fire)

    def loop_timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        future = self.loop_timers.pop(id(handle), None)
        if future is not None:
            future.cancel()

    # -- sessions -------------------------------------------------------------------------------
    def check_session_use(self, session_id: str) -> None:
        if session_id not in self.open_sessions:
            self.fail(
                "configuration",
                "SessionNotOpenError",
                f"activity scheduled on session {session_id!r}, which is not open "
                f"(open: {sorted(self.open_sessions)}); call ctx.open_session() first",
            )

    def session_queue(self, session_id: str, wanted: str | None, *, explicit: bool) -> str:
        """The queue of an activity called on ``session_id``: the session's (opened with one,
        or fixed by its first activity); a call naming another queue is a configuration
        error (its worker could never run it: the session's owner serves the session's)."""
        known = self.session_queues.get(session_id)
        if known is None:
            return wanted or "default"
        if explicit and wanted != known:
            self.fail(
                "configuration",
                "SessionQueueError",
                f"activity called with queue={wanted!r} on session {session_id!r}, which runs on "
                f"queue {known!r}: a session's activities all run on its queue",
            )
        return known

    def open_session(
        self, session_id: str, *, explicit: bool, queue: str | None = None
    ) -> asyncio.Future[str]:
        future: asyncio.Future[str] = self.loop.create_future()
        if explicit and not valid_id(session_id, rule=SESSION):
            self.fail(
                "configuration",
                "InvalidIdError",
                f"invalid session id {session_id!r}: 1..{MAX_SESSION_ID_LENGTH} bytes of "
                "UTF-8, without newline or NUL",
            )
        if session_id not in self.open_sessions:
            if len(self.open_sessions) >= self.max_sessions:
                self.fail(
                    "configuration",
                    "TooManySessionsError",
                    f"cannot open session {session_id!r}: {len(self.open_sessions)} sessions are "
                    f"open and max_sessions_per_orchestration is {self.max_sessions}",
                )
            opened = self.command(
                ev.SessionOpened, session_id=session_id, queue=None if queue == "default" else queue
            )
            self.open_sessions.add(session_id)
            if opened.queue is not None or queue is not None:
                self.session_queues[session_id] = opened.queue or "default"
        future.set_result(session_id)
        return future

    def close_session(self, session_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        if session_id in self.open_sessions:
            self.command(ev.SessionClosed, session_id=session_id)
            self.open_sessions.discard(session_id)
            self.session_queues.pop(session_id, None)
            for source_id, session in sorted(self.activity_sessions.items()):
                if session == session_id:
                    self._fail_for_closed_session(source_id, session_id)
        future.set_result(None)
        return future

    def _fail_for_closed_session(self, source_id: int, session_id: str) -> None:
        waiter = self.waiters.pop(source_id, None)
        self.pending_cancels[source_id] = ("activity", "session closed")
        if waiter is not None:
            failure = FailureDetails(
                "cancelled",
                "SessionClosedError",
                f"session {session_id!r} was closed while the activity was in flight",
            )
            waiter(
                ev.ActivityFailed(
                    event_id=0, timestamp_ms=0, activity_id=source_id, failure=failure
                )
            )

    # -- teardown -------------------------------------------------------------------------------
    def close(self) -> None:
        """End the turn: close every coroutine still waiting, so none runs later (e.g. on GC)."""
        self.loop.halt()
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self.loop)
        try:
            for task in [t for t in self.loop.tasks if not t.done()]:
                task._log_destroy_pending = False  # type: ignore[attr-defined]
                coro = task.get_coro()
                # user finally-blocks may raise (Terminated, RuntimeError); nothing to do about it
                with contextlib.suppress(BaseException):
                    coro.close()
        finally:
            asyncio.events._set_running_loop(previous)
            self.loop.close()


# -- where the orchestration's code diverged (frames only: no source file is read here) --------
_LIBRARY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # durable_redis/
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__))


def _is_user_file(filename: str) -> bool:
    path = os.path.abspath(filename)
    if path.startswith(_LIBRARY_DIR + os.sep) or filename.startswith("<"):
        return False
    return not (path.startswith(_STDLIB_DIR + os.sep) and "site-packages" not in path)


def _user_frame(frame: FrameType | None) -> str | None:
    """``path:line`` of the innermost frame of user code on this stack (the call of a
    ``ctx`` method that issued a command) inside the engine's run of the code, None if none."""
    stop = _driving_codes()
    while frame is not None and frame.f_code not in stop:
        if _is_user_file(frame.f_code.co_filename):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _driving_codes() -> frozenset[CodeType]:
    """The engine's frames that run the code: user frames are only above them."""
    engine = ReplayEngine
    return frozenset(
        f.__code__ for f in (engine.run_code, engine.replay, engine.deliver, engine.add_input)
    )


def _suspended_at(coro: Any) -> str | None:
    """``path:line`` where a suspended coroutine chain waits, innermost user frame first."""
    found = None
    seen = 0
    while coro is not None and seen < 100:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None and _is_user_file(frame.f_code.co_filename):
            found = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        seen += 1
    return found
