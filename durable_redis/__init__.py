"""durable_redis: durable execution for Python on nothing but Redis.

Write orchestrations as ``async def`` functions and activities as ordinary functions, register
them on an :class:`App`, run :class:`Worker` processes, and drive instances with a
:class:`Client`. See the README for the concepts and guarantees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from durable_redis._client_messaging import StreamItem
    from durable_redis._jobs_client import JobHandle, JobStatus
    from durable_redis._schedules_client import ScheduleInfo
    from durable_redis.client import Client, InstanceHandle, InstanceId, InstanceState
    from durable_redis.contract import InstanceStatus
    from durable_redis.core import (
        ActivityContext,
        App,
        Backoff,
        Codec,
        JsonCodec,
        MsgpackCodec,
        OrchestrationContext,
        RetryPolicy,
    )
    from durable_redis.core.jobs import Limit
    from durable_redis.devtools import RedisServer
    from durable_redis.errors import (
        ActivityFailedError,
        ActivityTimeoutError,
        ChildOrchestrationFailedError,
        CodecError,
        ConfigurationError,
        DurableRedisError,
        FailureDetails,
        FunctionsMissingError,
        HistoryLimitExceededError,
        InstanceExistsError,
        InstanceNotFoundError,
        InstanceRunningError,
        InstanceTerminalError,
        InvalidIdError,
        JobCancelledError,
        JobError,
        JobExistsError,
        JobFailedError,
        JobNotFoundError,
        JobStateError,
        LeaseLostError,
        NamespaceMissingError,
        NondeterminismError,
        NotRegisteredError,
        OrchestrationCancelledError,
        OrchestrationError,
        OrchestrationFailedError,
        PayloadTooLargeError,
        RegistrationError,
        ReplicationTimeoutError,
        ResetPointError,
        ScheduleNotFoundError,
        StoreError,
        StoreFullError,
        StoreUnavailableError,
        TaskFailedError,
        TurnCrashedWorkerError,
        TurnTimeoutError,
        UpdateFailedError,
        UpdateRejectedError,
        ValidationError,
        WaitTimeoutError,
    )
    from durable_redis.runtime import Worker, WorkerOptions, run_worker
    from durable_redis.storage import (
        ExistingInstancePolicy,
        RedisStore,
    )
    from durable_redis.storage.job_types import ExistingJobPolicy, JobState
    from durable_redis.sync_client import SyncClient, SyncInstanceHandle

_LAZY = {
    "ActivityContext": "durable_redis.core",
    "ActivityFailedError": "durable_redis.errors",
    "ActivityTimeoutError": "durable_redis.errors",
    "App": "durable_redis.core",
    "Backoff": "durable_redis.core",
    "ChildOrchestrationFailedError": "durable_redis.errors",
    "Client": "durable_redis.client",
    "Codec": "durable_redis.core",
    "CodecError": "durable_redis.errors",
    "ConfigurationError": "durable_redis.errors",
    "DurableRedisError": "durable_redis.errors",
    "ExistingInstancePolicy": "durable_redis.storage",
    "ExistingJobPolicy": "durable_redis.storage.job_types",
    "FailureDetails": "durable_redis.errors",
    "FunctionsMissingError": "durable_redis.errors",
    "HistoryLimitExceededError": "durable_redis.errors",
    "InstanceExistsError": "durable_redis.errors",
    "InstanceNotFoundError": "durable_redis.errors",
    "InstanceRunningError": "durable_redis.errors",
    "InstanceTerminalError": "durable_redis.errors",
    "InstanceHandle": "durable_redis.client",
    "InstanceId": "durable_redis.client",
    "InstanceState": "durable_redis.client",
    "InstanceStatus": "durable_redis.contract",
    "InvalidIdError": "durable_redis.errors",
    "JobCancelledError": "durable_redis.errors",
    "JobError": "durable_redis.errors",
    "JobExistsError": "durable_redis.errors",
    "JobFailedError": "durable_redis.errors",
    "JobHandle": "durable_redis._jobs_client",
    "JobNotFoundError": "durable_redis.errors",
    "JobState": "durable_redis.storage.job_types",
    "JobStateError": "durable_redis.errors",
    "Limit": "durable_redis.core.jobs",
    "JobStatus": "durable_redis._jobs_client",
    "JsonCodec": "durable_redis.core",
    "LeaseLostError": "durable_redis.errors",
    "MsgpackCodec": "durable_redis.core",
    "NamespaceMissingError": "durable_redis.errors",
    "NondeterminismError": "durable_redis.errors",
    "NotRegisteredError": "durable_redis.errors",
    "OrchestrationCancelledError": "durable_redis.errors",
    "OrchestrationContext": "durable_redis.core",
    "OrchestrationError": "durable_redis.errors",
    "OrchestrationFailedError": "durable_redis.errors",
    "PayloadTooLargeError": "durable_redis.errors",
    "RedisServer": "durable_redis.devtools",
    "RedisStore": "durable_redis.storage",
    "RegistrationError": "durable_redis.errors",
    "ReplicationTimeoutError": "durable_redis.errors",
    "ResetPointError": "durable_redis.errors",
    "RetryPolicy": "durable_redis.core",
    "ScheduleInfo": "durable_redis._schedules_client",
    "ScheduleNotFoundError": "durable_redis.errors",
    "StoreError": "durable_redis.errors",
    "StoreFullError": "durable_redis.errors",
    "StoreUnavailableError": "durable_redis.errors",
    "StreamItem": "durable_redis._client_messaging",
    "SyncClient": "durable_redis.sync_client",
    "SyncInstanceHandle": "durable_redis.sync_client",
    "TaskFailedError": "durable_redis.errors",
    "TurnCrashedWorkerError": "durable_redis.errors",
    "TurnTimeoutError": "durable_redis.errors",
    "UpdateFailedError": "durable_redis.errors",
    "UpdateRejectedError": "durable_redis.errors",
    "ValidationError": "durable_redis.errors",
    "WaitTimeoutError": "durable_redis.errors",
    "Worker": "durable_redis.runtime",
    "WorkerOptions": "durable_redis.runtime",
    "run_worker": "durable_redis.runtime",
}

from durable_redis._version import __version__  # noqa: E402

__all__ = [
    "ActivityContext",
    "ActivityFailedError",
    "ActivityTimeoutError",
    "App",
    "Backoff",
    "ChildOrchestrationFailedError",
    "Client",
    "Codec",
    "CodecError",
    "ConfigurationError",
    "DurableRedisError",
    "ExistingInstancePolicy",
    "ExistingJobPolicy",
    "FailureDetails",
    "FunctionsMissingError",
    "HistoryLimitExceededError",
    "InstanceExistsError",
    "InstanceHandle",
    "InstanceId",
    "InstanceNotFoundError",
    "InstanceRunningError",
    "InstanceState",
    "InstanceStatus",
    "InstanceTerminalError",
    "InvalidIdError",
    "JobCancelledError",
    "JobError",
    "JobExistsError",
    "JobFailedError",
    "JobHandle",
    "JobNotFoundError",
    "JobState",
    "JobStateError",
    "JobStatus",
    "JsonCodec",
    "LeaseLostError",
    "Limit",
    "MsgpackCodec",
    "NamespaceMissingError",
    "NondeterminismError",
    "NotRegisteredError",
    "OrchestrationCancelledError",
    "OrchestrationContext",
    "OrchestrationError",
    "OrchestrationFailedError",
    "PayloadTooLargeError",
    "RedisServer",
    "RedisStore",
    "RegistrationError",
    "ReplicationTimeoutError",
    "ResetPointError",
    "RetryPolicy",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
    "StreamItem",
    "SyncClient",
    "SyncInstanceHandle",
    "TaskFailedError",
    "TurnCrashedWorkerError",
    "TurnTimeoutError",
    "UpdateFailedError",
    "UpdateRejectedError",
    "ValidationError",
    "WaitTimeoutError",
    "Worker",
    "WorkerOptions",
    "__version__",
    "run_worker",
]


def __getattr__(name: str) -> Any:
    """Import on first use, so ``import durable_redis.core`` stays free of Redis and I/O."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'durable_redis' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
