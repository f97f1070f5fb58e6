"""``to_commit``: a turn's result, encoded as the turn contract's ``TurnCommit`` (what storage
stores; ``durable_redis.contract``). The one place a turn's decoded work becomes bytes."""

from __future__ import annotations

from durable_redis.contract import NewWorkItem, OutboundMessage, TurnCommit
from durable_redis.core._serial import encode_failure
from durable_redis.core.events import encode_event
from durable_redis.core.messages import encode_message, encode_task
from durable_redis.core.turn import TurnResult

__all__ = ["to_commit"]


def to_commit(result: TurnResult) -> TurnCommit:
    """Encode ``result``: its events, work items and messages as bytes, the rest as is."""
    failure = result.failure
    return TurnCommit(
        execution_id=result.execution_id,
        expected_history_len=result.history_len_before,
        events=[encode_event(e) for e in result.new_events],
        status=result.status,
        name=result.name,
        version=result.version,
        input=result.input,
        output=result.output,
        error=encode_failure(failure) if failure is not None else None,
        set_custom_status=result.custom_status_changed,
        custom_status=result.custom_status,
        work_items=[
            NewWorkItem(
                activity_key=task.activity_key,
                data=encode_task(task),
                session_id=task.session_id,
                queue=task.queue,
                priority=task.priority or 0,
                flow_key=task.flow_key,
                flow=task.flow,
            )
            for task in result.activities
        ],
        messages=[
            OutboundMessage(
                instance_id=out.instance_id,
                message_id=out.message_id,
                data=encode_message(out.message),
                visible_at_ms=out.visible_at_ms,
                create=out.create,
            )
            for out in result.outgoing
        ],
        cancelled_work=result.cancelled_activities,
        sessions_opened=result.sessions_opened,
        sessions_closed=result.sessions_closed,
        values=result.values,
        update_replies=result.update_replies,
        stream_items=result.stream_items,
    )
