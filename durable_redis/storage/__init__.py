"""Storage: the Store contract (``base``) and its Redis implementation (``RedisStore``).

This package is the only code that talks to Redis.
"""

from __future__ import annotations

from durable_redis.storage.base import (
    ExistingInstancePolicy,
    InstanceCreate,
    InstanceInfo,
    InstancePage,
    InstanceStatus,
    NewWorkItem,
    OrchestrationLease,
    OutboundMessage,
    QueueDepths,
    QueuedMessage,
    SessionRef,
    Store,
    TurnCommit,
    WorkItemLease,
)
from durable_redis.storage.redis_store import RedisStore

__all__ = [
    "ExistingInstancePolicy",
    "InstanceCreate",
    "InstanceInfo",
    "InstancePage",
    "InstanceStatus",
    "NewWorkItem",
    "OrchestrationLease",
    "OutboundMessage",
    "QueueDepths",
    "QueuedMessage",
    "RedisStore",
    "SessionRef",
    "Store",
    "TurnCommit",
    "WorkItemLease",
]
