"""The pure, deterministic heart: history events, the replay engine, the orchestration context.

No Redis, no I/O, no wall clock, no global random in this package (``tests/test_layers.py``).
Message classes live in :mod:`durable_redis.core.messages` (several share a name with the
history event they become, in :mod:`durable_redis.core.events`).
"""

from __future__ import annotations

from durable_redis.core import events, messages
from durable_redis.core._serial import SCHEMA_VERSION, decode_failure, encode_failure
from durable_redis.core.codec import Codec, JsonCodec, MsgpackCodec, PayloadTransform
from durable_redis.core.commit import to_commit
from durable_redis.core.context import OrchestrationContext, ReplaySafeLogger
from durable_redis.core.engine import Terminated
from durable_redis.core.events import HistoryEvent, decode_event, decode_history, encode_event
from durable_redis.core.loop import ForbiddenCallError
from durable_redis.core.messages import (
    ActivityTask,
    CancelRequested,
    Message,
    OutgoingMessage,
    QueueEventRaised,
    StartOrchestration,
    UpdateReply,
    UpdateRequested,
    activity_completed,
    activity_failed,
    cancel_message,
    decode_message,
    decode_reply,
    decode_task,
    encode_message,
    encode_reply,
    encode_task,
    event_raised_message,
    failure_from_exception,
    start_message,
)
from durable_redis.core.registry import (
    ActivityContext,
    ActivityDefinition,
    App,
    OrchestrationDefinition,
    StreamWriter,
    activity_metadata,
    orchestration_metadata,
)
from durable_redis.core.retry import Backoff, RetryPolicy
from durable_redis.core.turn import (
    LocalRunner,
    OrchestrationStatus,
    ReplayResult,
    SuspendedOrchestration,
    TurnResult,
    fail_instance,
    replay,
    run_turn,
    run_turn_suspending,
)

__all__ = [
    "SCHEMA_VERSION",
    "ActivityContext",
    "ActivityDefinition",
    "ActivityTask",
    "App",
    "Backoff",
    "CancelRequested",
    "Codec",
    "ForbiddenCallError",
    "HistoryEvent",
    "JsonCodec",
    "LocalRunner",
    "Message",
    "MsgpackCodec",
    "OrchestrationContext",
    "OrchestrationDefinition",
    "OrchestrationStatus",
    "OutgoingMessage",
    "PayloadTransform",
    "QueueEventRaised",
    "ReplayResult",
    "ReplaySafeLogger",
    "RetryPolicy",
    "StartOrchestration",
    "StreamWriter",
    "SuspendedOrchestration",
    "Terminated",
    "TurnResult",
    "UpdateReply",
    "UpdateRequested",
    "activity_completed",
    "activity_failed",
    "activity_metadata",
    "cancel_message",
    "decode_event",
    "decode_failure",
    "decode_history",
    "decode_message",
    "decode_reply",
    "decode_task",
    "encode_event",
    "encode_failure",
    "encode_message",
    "encode_reply",
    "encode_task",
    "event_raised_message",
    "events",
    "fail_instance",
    "failure_from_exception",
    "messages",
    "orchestration_metadata",
    "replay",
    "run_turn",
    "run_turn_suspending",
    "start_message",
    "to_commit",
]
