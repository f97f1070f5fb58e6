"""What a history says is in flight: derived from events alone, never from running code."""

from __future__ import annotations

from durable_redis.core import events as ev

__all__ = ["WorkState"]


class WorkState:
    """Open work of one execution, folded over its events in order."""

    __slots__ = (
        "activities",
        "cancel_requested",
        "children",
        "sessions",
        "started",
        "terminal",
        "timers",
        "update_ids",
        "updates",
    )

    def __init__(self) -> None:
        self.started: ev.OrchestrationStarted | None = None
        self.terminal: ev.HistoryEvent | None = None
        self.activities: dict[int, ev.ActivityScheduled] = {}
        self.timers: dict[int, ev.TimerCreated] = {}
        self.children: dict[int, ev.SubOrchestrationScheduled] = {}
        self.sessions: set[str] = set()
        self.cancel_requested = False
        self.updates: dict[str, ev.UpdateReceived] = {}  # received, not completed yet
        self.update_ids: set[str] = set()  # every update received by this execution

    def apply(self, event: ev.HistoryEvent) -> None:
        match event:
            case ev.OrchestrationStarted():
                self.started = event
                self.sessions = set(event.sessions)
            case ev.ActivityScheduled():
                self.activities[event.event_id] = event
            case (
                ev.ActivityCompleted(activity_id=source)
                | ev.ActivityFailed(activity_id=source)
                | ev.ActivityCancelRequested(activity_id=source)
            ):
                self.activities.pop(source, None)
            case ev.TimerCreated():
                self.timers[event.event_id] = event
            case ev.TimerFired():
                self.timers.pop(event.timer_id, None)
            case ev.SubOrchestrationScheduled():
                self.children[event.event_id] = event
            case (
                ev.SubOrchestrationCompleted(scheduled_id=source)
                | ev.SubOrchestrationFailed(scheduled_id=source)
                | ev.SubOrchestrationCancelRequested(scheduled_id=source)
            ):
                self.children.pop(source, None)
            case ev.SessionOpened():
                self.sessions.add(event.session_id)
            case ev.SessionClosed():
                self.sessions.discard(event.session_id)
            case ev.OrchestrationCancelRequested():
                self.cancel_requested = True
            case (
                ev.OrchestrationCompleted()
                | ev.OrchestrationFailed()
                | ev.OrchestrationContinuedAsNew()
            ):
                self.terminal = event
            case ev.UpdateReceived():
                self.updates[event.update_id] = event
                self.update_ids.add(event.update_id)
            case ev.UpdateCompleted():
                self.updates.pop(event.update_id, None)
            case (
                ev.EventSent()
                | ev.QueueEventRaised()
                | ev.QueueDequeued()
                | ev.ValueSet()
                | ev.StreamAppended()
                | ev.EventSubscribed()
                | ev.EventRaised()
                | ev.DetachedOrchestrationStarted()
                | ev.CustomStatusSet()
                | ev.PatchMarker()
                | ev.ExecutionReset()
            ):
                pass
            case _:  # pragma: no cover - exhaustive
                raise AssertionError(f"unknown event {event!r}")
