"""``run_turn``: the pure function the runtime calls once per orchestration turn."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from durable_redis import ids
from durable_redis.contract import FailureKind, InstanceCreate, InstanceStatus
from durable_redis.core import events as ev
from durable_redis.core import messages as msg
from durable_redis.core.codec import Codec
from durable_redis.core.engine import ReplayEngine
from durable_redis.core.registry import App
from durable_redis.core.state import WorkState
from durable_redis.errors import FailureDetails, NondeterminismError, NotRegisteredError

__all__ = [
    "LocalRunner",
    "OrchestrationStatus",
    "ReplayResult",
    "SuspendedOrchestration",
    "TurnResult",
    "fail_instance",
    "replay",
    "run_turn",
    "run_turn_suspending",
]


LocalRunner = Callable[[Sequence[msg.ActivityTask]], Sequence[msg.Message]]
"""Runs a turn's local activities (``ctx.call_local_activity``) and returns their completions."""


OrchestrationStatus = InstanceStatus
"""The turn contract's instance status (``durable_redis.contract.InstanceStatus``), by the name
core has always used for it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnResult:
    """Everything one turn decided, decoded (what tests and tracing read); ``to_commit`` encodes
    it into the turn contract's ``TurnCommit``, which storage stores."""

    execution_id: int
    history_len_before: int
    new_events: tuple[ev.HistoryEvent, ...]
    status: OrchestrationStatus
    name: str | None = None  # set when an execution starts this turn
    version: str | None = None
    input: bytes | None = None
    output: bytes | None = None
    failure: FailureDetails | None = None
    custom_status_changed: bool = False
    custom_status: bytes | None = None
    activities: tuple[msg.ActivityTask, ...] = ()
    outgoing: tuple[msg.OutgoingMessage, ...] = ()
    cancelled_activities: tuple[str, ...] = ()  # activity keys
    sessions_opened: tuple[str, ...] = ()
    sessions_closed: tuple[str, ...] = ()
    nondeterminism: NondeterminismError | None = None  # set when failure.kind == nondeterminism
    values: tuple[tuple[str, bytes | None], ...] = ()  # key-value state writes, in order
    update_replies: tuple[tuple[str, bytes], ...] = ()  # (update id, encode_reply bytes)
    stream_items: tuple[bytes, ...] = ()  # appended to the progress stream, in order


def _status_of(state: WorkState) -> OrchestrationStatus:
    match state.terminal:
        case None:
            return OrchestrationStatus.RUNNING if state.started else OrchestrationStatus.PENDING
        case ev.OrchestrationCompleted():
            return OrchestrationStatus.COMPLETED
        case ev.OrchestrationContinuedAsNew():
            return OrchestrationStatus.CONTINUED_AS_NEW
        case ev.OrchestrationFailed(failure=failure) if failure.kind == FailureKind.CANCELLED:
            return OrchestrationStatus.CANCELLED
        case _:
            return OrchestrationStatus.FAILED


def _unchanged(state: WorkState, execution_id: int, history_len: int) -> TurnResult:
    """A turn that changes nothing; a terminal state keeps reporting its output or failure."""
    terminal = state.terminal
    return TurnResult(
        execution_id=execution_id,
        history_len_before=history_len,
        new_events=(),
        status=_status_of(state),
        output=terminal.output if isinstance(terminal, ev.OrchestrationCompleted) else None,
        failure=terminal.failure if isinstance(terminal, ev.OrchestrationFailed) else None,
    )


def run_turn(
    app: App,
    instance_id: str,
    history: Sequence[ev.HistoryEvent],
    messages: Sequence[msg.Message],
    *,
    now_ms: int,
    codec: Codec | None = None,
    max_sessions_per_orchestration: int | None = None,
    trace: dict[str, str] | None = None,
) -> TurnResult:
    """Replay ``history`` (the current execution), apply ``messages``, return the turn.

    ``trace`` (the W3C trace context of the runtime's span for this turn) is stamped on the
    activities and children the turn schedules; replayed commands keep their recorded one.

    Raises NotRegisteredError for an orchestration (name, version) the app does not know,
    unless ``messages`` cancel it: a cancel needs no code, so the turn cancels it.
    Nondeterminism, poison and bad session use come back as a FAILED result.
    """
    result, _ = _run_turn(
        app,
        instance_id,
        history,
        messages,
        now_ms=now_ms,
        codec=codec,
        max_sessions_per_orchestration=max_sessions_per_orchestration,
        keep=False,
        trace=trace,
    )
    return result


def run_turn_suspending(
    app: App,
    instance_id: str,
    history: Sequence[ev.HistoryEvent],
    messages: Sequence[msg.Message],
    *,
    now_ms: int,
    codec: Codec | None = None,
    max_sessions_per_orchestration: int | None = None,
    trace: dict[str, str] | None = None,
    local_runner: LocalRunner | None = None,
) -> tuple[TurnResult, SuspendedOrchestration | None]:
    """:func:`run_turn`, plus the orchestration kept suspended if it is still RUNNING.

    ``local_runner`` runs the local activities the turn schedules; their completions are fed
    back into the same turn (more rounds until none is left), so the result records them.
    Without one, a local activity is dispatched like an ordinary one.

    Once the turn is committed (history = ``history`` + ``result.new_events``), the next turn
    can be :meth:`SuspendedOrchestration.advance` instead of a full replay. The caller owns the
    suspended orchestration and must :meth:`~SuspendedOrchestration.close` it if unused.
    """
    return _run_turn(
        app,
        instance_id,
        history,
        messages,
        now_ms=now_ms,
        codec=codec,
        max_sessions_per_orchestration=max_sessions_per_orchestration,
        keep=True,
        trace=trace,
        local_runner=local_runner,
    )


class SuspendedOrchestration:
    """A RUNNING orchestration left waiting on its private loop after a turn.

    :meth:`advance` applies only new messages to it and returns exactly the ``TurnResult`` that
    :func:`run_turn` would return for the full history (``history_len`` events) and the same
    messages: the replay is skipped, not changed. Valid only while the stored history is the
    one this object was built from; single use (``advance`` hands back a new object).
    """

    __slots__ = ("_engine", "execution_id", "history_len", "instance_id")

    def __init__(self, engine: ReplayEngine, instance_id: str, execution_id: int) -> None:
        self._engine: ReplayEngine | None = engine
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.history_len = len(engine.events)

    @property
    def started(self) -> ev.OrchestrationStarted | None:
        """The start of the execution it runs (None once closed)."""
        return self._engine.state.started if self._engine is not None else None

    def advance(
        self,
        messages: Sequence[msg.Message],
        *,
        now_ms: int,
        trace: dict[str, str] | None = None,
        local_runner: LocalRunner | None = None,
    ) -> tuple[TurnResult, SuspendedOrchestration | None]:
        """Apply ``messages`` as the next turn; the result is a :func:`run_turn_suspending`'s.

        Raises RuntimeError if this object was already advanced or closed, or if its engine
        changed since the turn that suspended it (then replay in full instead).
        """
        engine, self._engine = self._engine, None
        if engine is None:
            raise RuntimeError("this suspended orchestration was already advanced or closed")
        kept = False
        try:
            if len(engine.events) != self.history_len or engine.finished:
                raise RuntimeError("the suspended orchestration changed while it waited")
            engine.base_len = len(engine.events)
            engine.now_ms = engine.current_ms = now_ms
            engine.trace = trace
            engine.loop.unhandled.clear()
            engine.update_replies.clear()  # answered by the turn that suspended it
            _apply_messages(engine, self.execution_id, messages, now_ms)
            result = _with_locals(engine, self.instance_id, self.execution_id, now_ms, local_runner)
            suspended = _suspend(engine, result, self.instance_id, self.execution_id)
            kept = suspended is not None
            return result, suspended
        finally:
            if not kept:
                engine.close()

    def close(self) -> None:
        """Close the waiting coroutines (idempotent); call it when dropping the object."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    @property
    def closed(self) -> bool:
        return self._engine is None


def _suspend(
    engine: ReplayEngine, result: TurnResult, instance_id: str, execution_id: int
) -> SuspendedOrchestration | None:
    if result.status is not OrchestrationStatus.RUNNING or engine.finished:
        return None
    return SuspendedOrchestration(engine, instance_id, execution_id)


def _with_locals(
    engine: ReplayEngine,
    instance_id: str,
    execution_id: int,
    now_ms: int,
    local_runner: LocalRunner | None,
) -> TurnResult:
    """The turn's result, after running its local activities (rounds until none is new).

    Each round reads only the events the round before appended (a chain of N local steps is
    N rounds of O(1) events, not N results of O(N)); the result is built once, at the end.
    """
    if local_runner is None:
        return build_result(engine, instance_id, execution_id)
    ran: set[int] = set()
    scanned = engine.base_len
    while not engine.finished:
        window = engine.events[scanned:]
        scanned += len(window)
        cancelled = {e.activity_id for e in window if isinstance(e, ev.ActivityCancelRequested)}
        started = engine.state.started
        name = started.name if started else ""
        pending = [
            _activity_task(e, instance_id, execution_id, name)
            for e in window
            if isinstance(e, ev.ActivityScheduled) and e.local and e.event_id not in cancelled
        ]
        if not pending:
            break
        ran.update(t.activity_id for t in pending)
        _apply_messages(engine, execution_id, local_runner(pending), now_ms)
    result = build_result(engine, instance_id, execution_id)
    if not ran:
        return result
    return dataclasses.replace(
        result, activities=tuple(t for t in result.activities if t.activity_id not in ran)
    )


def _activity_task(
    event: ev.ActivityScheduled, instance_id: str, execution_id: int, orchestration_name: str
) -> msg.ActivityTask:
    """The work item of an activity this turn scheduled."""
    return msg.ActivityTask(
        instance_id=instance_id,
        execution_id=execution_id,
        activity_id=event.event_id,
        name=event.name,
        input=event.input,
        session_id=event.session_id,
        attempt=event.attempt,
        timeout_ms=event.timeout_ms,
        first_attempt_id=event.first_attempt_id,
        orchestration_name=orchestration_name,
        trace=event.trace,
        queue=event.queue,
        priority=event.priority,
        flow_key=event.flow_key,
        flow=event.flow,
    )


def _apply_messages(
    engine: ReplayEngine, execution_id: int, messages: Sequence[msg.Message], now_ms: int
) -> None:
    for message in messages:
        if engine.finished:
            if isinstance(message, msg.QueueEventRaised | msg.UpdateRequested):
                engine.late_messages.append(message)  # carried (CAN) or answered (terminal)
            continue
        accepted = _accept(engine, execution_id, message, now_ms)
        if accepted is not None:
            engine.add_input(accepted)


def _run_turn(
    app: App,
    instance_id: str,
    history: Sequence[ev.HistoryEvent],
    messages: Sequence[msg.Message],
    *,
    now_ms: int,
    codec: Codec | None,
    max_sessions_per_orchestration: int | None,
    keep: bool,
    trace: dict[str, str] | None = None,
    local_runner: LocalRunner | None = None,
) -> tuple[TurnResult, SuspendedOrchestration | None]:
    codec = codec if codec is not None else app.codec
    max_sessions = (
        max_sessions_per_orchestration
        if max_sessions_per_orchestration is not None
        else app.max_sessions_per_orchestration
    )
    history = list(history)
    state = WorkState()
    for event in history:
        state.apply(event)
    execution_id = state.started.execution_id if state.started else 0

    if history and not isinstance(history[0], ev.OrchestrationStarted):
        return fail_instance(
            history,
            FailureDetails(
                FailureKind.NONDETERMINISM,
                "CorruptedHistory",
                "history does not begin with a start",
            ),
            now_ms=now_ms,
            instance_id=instance_id,
        ), None
    start: msg.StartOrchestration | None = None
    if state.started is None or isinstance(state.terminal, ev.OrchestrationContinuedAsNew):
        for message in messages:
            if isinstance(message, msg.StartOrchestration) and (
                state.started is None or message.execution_id == execution_id + 1
            ):
                start = message
                break
        if start is None:  # nothing can happen before a start
            return TurnResult(
                execution_id=execution_id,
                history_len_before=len(history),
                new_events=(),
                status=_status_of(state),
            ), None
        history, execution_id = [], start.execution_id
    elif state.terminal is not None:  # finished: late messages are dropped
        return _unchanged(state, execution_id, len(history)), None

    try:
        if start is not None:
            definition = app.get_orchestration(start.name, start.version or None)
        else:
            assert state.started is not None
            definition = app.get_orchestration(
                state.started.name, state.started.version, exact=True
            )
    except NotRegisteredError:
        # No code here, but a cancel needs none: it ends the instance before any code would run.
        cancelled = _cancel_without_code(history, start, messages, now_ms, instance_id)
        if cancelled is None:
            raise
        return cancelled, None

    engine = ReplayEngine(app, history, now_ms=now_ms, codec=codec, max_sessions=max_sessions)
    engine.trace = trace
    suspended: SuspendedOrchestration | None = None
    try:
        if start is not None:
            engine.add_input(_started(start, instance_id, now_ms, definition.version))
        else:
            engine.replay()
        _apply_messages(engine, execution_id, messages, now_ms)
        result = _with_locals(engine, instance_id, execution_id, now_ms, local_runner)
        if keep:
            suspended = _suspend(engine, result, instance_id, execution_id)
    finally:
        if suspended is None:
            engine.close()
    return result, suspended


def _started(
    start: msg.StartOrchestration, instance_id: str, now_ms: int, version: str
) -> ev.OrchestrationStarted:
    """The first event of the execution ``start`` begins (what it carries across
    continue-as-new: sessions, queued events, value keys, trace context)."""
    return ev.OrchestrationStarted(
        event_id=1,
        timestamp_ms=now_ms,
        instance_id=instance_id,
        name=start.name,
        version=version,
        input=start.input,
        execution_id=start.execution_id,
        parent_instance_id=start.parent_instance_id,
        parent_execution_id=start.parent_execution_id,
        parent_event_id=start.parent_event_id,
        sessions=tuple(start.sessions),
        queue_names=start.queue_names,
        queue_data=start.queue_data,
        value_keys=start.value_keys,
        trace=start.trace,
    )


def _cancel_without_code(
    history: Sequence[ev.HistoryEvent],
    start: msg.StartOrchestration | None,
    messages: Sequence[msg.Message],
    now_ms: int,
    instance_id: str,
) -> TurnResult | None:
    """The CANCELLED turn of an orchestration this app does not know, if ``messages`` cancel it.

    The same outcome as with the code: a cancel ends the execution at once (its in-flight work
    cancelled, its sessions purged, its parent told); the other messages of the turn are
    dropped with it. ``start`` begins a new execution (``history`` is then empty).
    """
    cancel = next((m for m in messages if isinstance(m, msg.CancelRequested)), None)
    if cancel is None:
        return None
    new: list[ev.HistoryEvent] = []
    if start is not None:
        new.append(_started(start, instance_id, now_ms, start.version))
    eid = len(history) + len(new) + 1
    reason = cancel.reason or "cancel requested"
    new.append(
        ev.OrchestrationCancelRequested(event_id=eid, timestamp_ms=now_ms, reason=cancel.reason)
    )
    new.append(
        ev.OrchestrationFailed(
            event_id=eid + 1,
            timestamp_ms=now_ms,
            failure=FailureDetails(FailureKind.CANCELLED, "OrchestrationCancelled", reason),
        )
    )
    state = WorkState()
    for event in (*history, *new):
        state.apply(event)
    assert state.started is not None
    return _result_from(state, new, instance_id, state.started.execution_id, len(history), None)


def _accept(
    engine: ReplayEngine, execution_id: int, message: msg.Message, now_ms: int
) -> ev.HistoryEvent | None:
    """The input event for ``message``, or None if it is stale, unknown or a duplicate."""
    state = engine.state
    eid = len(engine.events) + 1
    match message:
        case msg.ActivityCompleted() if (
            message.execution_id == execution_id and message.activity_id in state.activities
        ):
            return ev.ActivityCompleted(
                event_id=eid,
                timestamp_ms=now_ms,
                activity_id=message.activity_id,
                result=message.result,
            )
        case msg.ActivityFailed() if (
            message.execution_id == execution_id and message.activity_id in state.activities
        ):
            return ev.ActivityFailed(
                event_id=eid,
                timestamp_ms=now_ms,
                activity_id=message.activity_id,
                failure=message.failure,
            )
        case msg.TimerFired() if (
            message.execution_id == execution_id and message.timer_id in state.timers
        ):
            return ev.TimerFired(
                event_id=eid,
                timestamp_ms=now_ms,
                timer_id=message.timer_id,
                fire_at_ms=message.fire_at_ms,
            )
        case msg.SubOrchestrationCompleted() if (
            message.execution_id == execution_id and message.scheduled_id in state.children
        ):
            return ev.SubOrchestrationCompleted(
                event_id=eid,
                timestamp_ms=now_ms,
                scheduled_id=message.scheduled_id,
                output=message.output,
            )
        case msg.SubOrchestrationFailed() if (
            message.execution_id == execution_id and message.scheduled_id in state.children
        ):
            return ev.SubOrchestrationFailed(
                event_id=eid,
                timestamp_ms=now_ms,
                scheduled_id=message.scheduled_id,
                failure=message.failure,
            )
        case msg.EventRaised():
            return ev.EventRaised(
                event_id=eid, timestamp_ms=now_ms, name=message.name, data=message.data
            )
        case msg.QueueEventRaised():
            return ev.QueueEventRaised(
                event_id=eid, timestamp_ms=now_ms, queue=message.queue, data=message.data
            )
        case msg.UpdateRequested() if engine.accept_update(
            message.update_id, message.name, message.input
        ):
            return ev.UpdateReceived(
                event_id=eid,
                timestamp_ms=now_ms,
                update_id=message.update_id,
                name=message.name,
                input=message.input,
            )
        case msg.CancelRequested() if not state.cancel_requested:
            return ev.OrchestrationCancelRequested(
                event_id=eid, timestamp_ms=now_ms, reason=message.reason
            )
        case _:
            return None


def build_result(engine: ReplayEngine, instance_id: str, execution_id: int) -> TurnResult:
    """Turn the events appended this turn into work, messages and session changes."""
    new = engine.events[engine.base_len :]
    return _result_from(
        engine.state,
        new,
        instance_id,
        execution_id,
        engine.base_len,
        engine.nondeterminism,
        engine,
    )


def _result_from(
    state: WorkState,
    new: Sequence[ev.HistoryEvent],
    instance_id: str,
    execution_id: int,
    history_len_before: int,
    nondeterminism: NondeterminismError | None,
    engine: ReplayEngine | None = None,
) -> TurnResult:
    terminal = state.terminal if state.terminal in new else None
    values: list[tuple[str, bytes | None]] = []
    replies: list[tuple[str, bytes]] = []
    stream: list[bytes] = []
    if engine is not None:
        replies += [(uid, _reply(None, f)) for uid, f in engine.update_replies]
    started = state.started
    turn = (instance_id, execution_id)  # what every message id of this turn starts with
    tasks: list[msg.ActivityTask] = []
    outgoing: list[msg.OutgoingMessage] = []
    cancelled: list[str] = []
    opened: list[str] = []
    closed: list[str] = []
    started_here: ev.OrchestrationStarted | None = None
    custom: ev.CustomStatusSet | None = None
    name = started.name if started else ""
    for event in new:
        match event:
            case ev.OrchestrationStarted():
                started_here = event
            case ev.ActivityScheduled():
                tasks.append(_activity_task(event, instance_id, execution_id, name))
            case ev.ActivityCancelRequested():
                cancelled.append(ids.activity_key(execution_id, event.activity_id))
            case ev.TimerCreated():
                fired = msg.TimerFired(
                    execution_id=execution_id, timer_id=event.event_id, fire_at_ms=event.fire_at_ms
                )
                outgoing.append(
                    msg.OutgoingMessage(
                        instance_id=instance_id,
                        message_id=ids.timer_message_id(*turn, event.event_id),
                        message=fired,
                        visible_at_ms=event.fire_at_ms,
                    )
                )
            case ev.SubOrchestrationScheduled() | ev.DetachedOrchestrationStarted():
                child = isinstance(event, ev.SubOrchestrationScheduled)
                start = msg.StartOrchestration(
                    name=event.name,
                    input=event.input,
                    version=event.version,
                    parent_instance_id=instance_id if child else None,
                    parent_execution_id=execution_id if child else None,
                    parent_event_id=event.event_id if child else None,
                    trace=event.trace,
                )
                create = InstanceCreate(
                    name=event.name,
                    version=event.version,
                    parent_instance_id=instance_id if child else None,
                    input=event.input,
                )
                outgoing.append(
                    msg.OutgoingMessage(
                        instance_id=event.instance_id,
                        message_id=ids.child_start_id(*turn, event.event_id),
                        message=start,
                        create=create,
                    )
                )
            case ev.SubOrchestrationCancelRequested():
                outgoing.append(_child_cancel(state, event.scheduled_id, turn, event.reason, new))
            case ev.CustomStatusSet():
                custom = event
            case ev.ValueSet():
                values.append((event.key, event.value))
            case ev.StreamAppended():
                stream.append(event.data)
            case ev.UpdateCompleted():
                replies.append((event.update_id, _reply(event.result, event.failure)))
            case ev.EventSent():
                outgoing.append(
                    msg.OutgoingMessage(
                        instance_id=event.instance_id,
                        message_id=ids.event_to_instance_id(*turn, event.event_id),
                        message=msg.EventRaised(name=event.name, data=event.data),
                    )
                )
            case ev.SessionOpened():
                opened.append(event.session_id)
            case ev.SessionClosed():
                closed.append(event.session_id)
            case _:
                pass

    status = _status_of(state)
    output: bytes | None = None
    failure: FailureDetails | None = None
    if terminal is not None:
        in_flight = {ids.activity_key(execution_id, aid): aid for aid in state.activities}
        cancelled.extend(sorted(in_flight, key=in_flight.__getitem__))
        tasks = [t for t in tasks if t.activity_key not in in_flight]
        fresh_children = {e.event_id for e in new if isinstance(e, ev.SubOrchestrationScheduled)}
        outgoing = [
            o
            for o in outgoing
            if not isinstance(o.message, msg.TimerFired)
            and not (
                isinstance(o.message, msg.StartOrchestration)
                and _is_fresh_child(o, fresh_children, turn)
            )
        ]
        for scheduled_id in sorted(state.children):
            if scheduled_id not in fresh_children:
                outgoing.append(_child_cancel(state, scheduled_id, turn, "parent finished", new))
        ended = FailureDetails(
            FailureKind.APPLICATION,
            "InstanceEndedError",
            f"the instance ended ({status.value}) first",
        )
        replies += [(uid, _reply(None, ended)) for uid in sorted(state.updates)]
        if isinstance(terminal, ev.OrchestrationContinuedAsNew):
            assert started is not None
            carried: list[tuple[str, bytes]] = []
            late_updates: list[msg.UpdateRequested] = []
            if engine is not None:  # queue events arrived after the continue: after the
                carried = engine.unconsumed_queue_events()  # buffered ones, before newer ones
                for late in engine.late_messages:
                    if isinstance(late, msg.QueueEventRaised):
                        carried.append((late.queue, late.data))
                    else:
                        late_updates.append(late)
            value_keys = sorted(engine.value_keys) if engine is not None else []
            outgoing.append(
                msg.OutgoingMessage(
                    instance_id=instance_id,
                    message_id=ids.continue_as_new_id(*turn),
                    message=msg.StartOrchestration(
                        name=started.name,
                        input=terminal.input,
                        version=terminal.version,
                        execution_id=execution_id + 1,
                        parent_instance_id=started.parent_instance_id,
                        parent_execution_id=started.parent_execution_id,
                        parent_event_id=started.parent_event_id,
                        sessions=tuple(sorted(state.sessions)),
                        queue_names=tuple(q for q, _ in carried) or None,
                        queue_data=tuple(d for _, d in carried) or None,
                        value_keys=tuple(value_keys) or None,
                        trace=started.trace,
                    ),
                )
            )
            for update in late_updates:  # arrived after the continue: to the next execution
                outgoing.append(
                    msg.OutgoingMessage(
                        instance_id=instance_id,
                        message_id=ids.carried_update_id(*turn, update.update_id),
                        message=update,
                    )
                )
        else:
            for late in engine.late_messages if engine is not None else []:
                if isinstance(late, msg.UpdateRequested):
                    replies.append((late.update_id, _reply(None, ended)))
            closed.extend(sorted(state.sessions - set(closed)))
            if isinstance(terminal, ev.OrchestrationCompleted):
                output = terminal.output
            elif isinstance(terminal, ev.OrchestrationFailed):
                failure = terminal.failure
            if started is not None and started.parent_instance_id is not None:
                outgoing.append(_to_parent(started, instance_id, execution_id, output, failure))
    if cancelled:
        gone = set(cancelled)
        tasks = [t for t in tasks if t.activity_key not in gone]
    return TurnResult(
        execution_id=execution_id,
        history_len_before=history_len_before,
        new_events=tuple(new),
        status=status,
        name=started_here.name if started_here else None,
        version=started_here.version if started_here else None,
        input=started_here.input if started_here else None,
        output=output,
        failure=failure,
        custom_status_changed=custom is not None,
        custom_status=custom.status if custom is not None else None,
        activities=tuple(tasks),
        outgoing=tuple(outgoing),
        cancelled_activities=tuple(dict.fromkeys(cancelled)),
        sessions_opened=tuple(opened),
        sessions_closed=tuple(dict.fromkeys(closed)),
        nondeterminism=nondeterminism,
        values=tuple(values),
        update_replies=tuple(replies),
        stream_items=tuple(stream),
    )


def _reply(result: bytes | None, failure: FailureDetails | None) -> bytes:
    return msg.encode_reply(msg.UpdateReply(result=result, failure=failure))


def _is_fresh_child(out: msg.OutgoingMessage, fresh: set[int], turn: tuple[str, int]) -> bool:
    return any(out.message_id == ids.child_start_id(*turn, sid) for sid in fresh)


def _child_cancel(
    state: WorkState,
    scheduled_id: int,
    turn: tuple[str, int],
    reason: str,
    new: Sequence[ev.HistoryEvent],
) -> msg.OutgoingMessage:
    child_id = ""
    for event in new:
        if isinstance(event, ev.SubOrchestrationScheduled) and event.event_id == scheduled_id:
            child_id = event.instance_id
    if not child_id:
        child_id = (
            state.children[scheduled_id].instance_id if scheduled_id in state.children else ""
        )
    return msg.OutgoingMessage(
        instance_id=child_id,
        message_id=ids.child_cancel_id(*turn, scheduled_id),
        message=msg.CancelRequested(reason=reason),
    )


def _to_parent(
    started: ev.OrchestrationStarted,
    instance_id: str,
    execution_id: int,
    output: bytes | None,
    failure: FailureDetails | None,
) -> msg.OutgoingMessage:
    assert started.parent_instance_id is not None
    parent_exec = started.parent_execution_id or 0
    parent_event = started.parent_event_id or 0
    message: msg.Message
    if failure is None:
        message = msg.SubOrchestrationCompleted(
            execution_id=parent_exec, scheduled_id=parent_event, output=output or b""
        )
    else:
        message = msg.SubOrchestrationFailed(
            execution_id=parent_exec, scheduled_id=parent_event, failure=failure
        )
    return msg.OutgoingMessage(
        instance_id=started.parent_instance_id,
        message_id=ids.child_result_id(instance_id, parent_exec, parent_event),
        message=message,
    )


def fail_instance(
    history: Sequence[ev.HistoryEvent],
    details: FailureDetails,
    *,
    now_ms: int,
    instance_id: str | None = None,
    execution_id: int | None = None,
) -> TurnResult:
    """A FAILED turn for a verdict of the runtime (turn poison, undecodable history).

    Lists in-flight activities and children to cancel, every open session to purge, and
    notifies the parent. A history that is already terminal gets no new event.
    """
    state = WorkState()
    for event in history:
        state.apply(event)
    iid = (
        instance_id
        if instance_id is not None
        else (state.started.instance_id if state.started else "")
    )
    eid = (
        execution_id
        if execution_id is not None
        else (state.started.execution_id if state.started else 0)
    )
    if state.terminal is not None:
        return _unchanged(state, eid, len(history))
    failed = ev.OrchestrationFailed(event_id=len(history) + 1, timestamp_ms=now_ms, failure=details)
    state.apply(failed)
    return _result_from(state, [failed], iid, eid, len(history), None)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Outcome of replaying a whole recorded history against the current code."""

    events_replayed: int
    status: OrchestrationStatus
    nondeterminism: NondeterminismError | None
    new_events: tuple[ev.HistoryEvent, ...]  # commands the code emitted beyond the history

    @property
    def ok(self) -> bool:
        return self.nondeterminism is None and not self.new_events


def replay(
    app: App, history: Sequence[ev.HistoryEvent], *, codec: Codec | None = None
) -> ReplayResult:
    """Replay a complete recorded execution (terminal or not) and report any divergence."""
    history = list(history)
    if not history or not isinstance(history[0], ev.OrchestrationStarted):
        raise ValueError("a history starts with OrchestrationStarted")
    started = history[0]
    app.get_orchestration(started.name, started.version, exact=True)
    engine = ReplayEngine(
        app,
        history,
        now_ms=history[-1].timestamp_ms,
        codec=codec if codec is not None else app.codec,
        max_sessions=app.max_sessions_per_orchestration,
    )
    try:
        engine.replay()
    finally:
        engine.close()
    return ReplayResult(
        events_replayed=min(engine.cursor, len(history)),
        status=_status_of(engine.state),
        nondeterminism=engine.nondeterminism,
        new_events=tuple(engine.events[len(history) :]),
    )
