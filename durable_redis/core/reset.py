"""Reset: re-run an instance from a chosen point of its history as a new execution (pure).

An operator resets a failed, held, completed or cancelled instance (``client.reset``,
``durable-redis reset``, the dashboard). Execution N+1 begins as a copy of events 1..E of
execution N (its ``OrchestrationStarted`` renumbered N+1), followed by an ``ExecutionReset``
event saying from where, why and by whom; execution N's history stays readable. The code then
runs live from E: results recorded up to E are kept (replayed), everything after re-runs.

Events raised after E (``EventRaised``, ``QueueEventRaised``) were consumed by the execution
being replaced; unless ``reapply_events=False`` they are queued again for the new one, in their
order and before anything else queued, so the code re-run from E receives them again (what
Temporal's reset does with signals).

A point E is valid when nothing is in flight after event E (no activity, timer, child or
update waiting for its completion) and the execution has not ended there: the new execution
has nothing to wait for that no one would send. ``reset_points`` lists them; the shortcuts
``"before-failure"`` (the latest valid point before the first failure event, or the latest
point if none failed) and ``"last-turn"`` (the latest valid point) pick one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from durable_redis.core import events as ev
from durable_redis.core import messages as msg
from durable_redis.core.state import WorkState
from durable_redis.errors import ResetPointError, ValidationError

__all__ = ["RESET_SHORTCUTS", "ResetPlan", "plan_reset", "reset_points"]

RESET_SHORTCUTS = ("before-failure", "last-turn")
MAX_REASON_CHARS = 2000  # reason and by are recorded in the history: keep them short
_FAILURES = (ev.ActivityFailed, ev.SubOrchestrationFailed, ev.OrchestrationFailed)


@dataclass(frozen=True, slots=True)
class ResetPlan:
    """What the reset script writes: execution ``new_execution`` = ``started`` + events
    2..``keep`` of ``from_execution`` + ``reset_event`` (both encoded)."""

    from_execution: int
    keep: int
    new_execution: int
    started: bytes
    reset_event: bytes
    reapplied: tuple[tuple[str, bytes], ...] = ()  # (message id, encoded message), in order


def reset_points(history: Sequence[ev.HistoryEvent]) -> list[int]:
    """Event ids a reset may keep up to (ascending): nothing in flight, not ended."""
    state = WorkState()
    points: list[int] = []
    for event in history:
        state.apply(event)
        if state.terminal is not None or state.cancel_requested:
            break
        if not (state.activities or state.timers or state.children or state.updates):
            points.append(event.event_id)
    return points


def _first_failure(history: Sequence[ev.HistoryEvent]) -> int | None:
    return next((e.event_id for e in history if isinstance(e, _FAILURES)), None)


def choose_point(history: Sequence[ev.HistoryEvent], event_id: int | str) -> int:
    """The event id to keep up to: ``event_id`` itself if valid, or a shortcut's choice.
    ResetPointError (listing the valid points) otherwise."""
    points = reset_points(history)
    if not points:
        raise ResetPointError(
            "this history has no point to reset to (it does not begin with a start)"
        )
    shown = ", ".join(map(str, points[-20:]))
    if isinstance(event_id, str):
        if event_id == "last-turn":
            return points[-1]
        if event_id == "before-failure":
            failed = _first_failure(history)
            before = [p for p in points if failed is None or p < failed]
            return before[-1] if before else points[0]
        raise ResetPointError(
            f"unknown reset point {event_id!r}: an event id or one of {RESET_SHORTCUTS}"
        )
    if isinstance(event_id, bool) or not isinstance(event_id, int):
        raise ResetPointError(f"the reset point must be an event id (int), got {event_id!r}")
    if event_id not in points:
        raise ResetPointError(
            f"cannot reset to event {event_id}: work is in flight there, or the execution has "
            f"ended by then; valid points: {shown}"
        )
    return event_id


def plan_reset(
    history: Sequence[ev.HistoryEvent],
    event_id: int | str,
    *,
    reason: str = "",
    by: str = "",
    now_ms: int,
    reapply_events: bool = True,
) -> ResetPlan:
    """The new execution that resets ``history`` (the current execution) to ``event_id``."""
    for what, text in (("reason", reason), ("by", by)):
        if not isinstance(text, str) or len(text) > MAX_REASON_CHARS:
            raise ValidationError(
                f"the reset's {what} must be a string of at most {MAX_REASON_CHARS} characters"
            )
    if not history or not isinstance(history[0], ev.OrchestrationStarted):
        raise ResetPointError("this instance has no started execution to reset")
    keep = choose_point(history, event_id)
    started = history[0]
    new_execution = started.execution_id + 1
    reset = ev.ExecutionReset(
        event_id=keep + 1,
        timestamp_ms=now_ms,
        from_execution=started.execution_id,
        from_event=keep,
        reason=reason,
        by=by,
    )
    reapplied: list[tuple[str, bytes]] = []
    for event in history[keep:] if reapply_events else ():
        message: msg.Message
        if isinstance(event, ev.EventRaised):
            message = msg.EventRaised(name=event.name, data=event.data)
        elif isinstance(event, ev.QueueEventRaised):
            message = msg.QueueEventRaised(queue=event.queue, data=event.data)
        else:
            continue
        mid = f"reset:{new_execution}:{event.event_id}"
        reapplied.append((mid, msg.encode_message(message)))
    return ResetPlan(
        from_execution=started.execution_id,
        keep=keep,
        new_execution=new_execution,
        started=ev.encode_event(dataclasses.replace(started, execution_id=new_execution)),
        reset_event=ev.encode_event(reset),
        reapplied=tuple(reapplied),
    )
