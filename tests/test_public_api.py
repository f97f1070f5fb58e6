"""Pins the public API: a change to what ``durable_redis`` exports must be deliberate."""

from __future__ import annotations

import durable_redis
import durable_redis.errors as errors

EXPECTED = {
    "ActivityContext", "ActivityFailedError", "ActivityTimeoutError", "App", "Backoff",
    "ChildOrchestrationFailedError", "Client", "Codec", "CodecError", "ConfigurationError",
    "DurableRedisError", "ExistingInstancePolicy", "FailureDetails", "InstanceExistsError",
    "InstanceHandle", "InstanceId", "InstanceNotFoundError", "InstanceRunningError",
    "InstanceState",
    "InstanceStatus", "InstanceTerminalError", "InvalidIdError", "JsonCodec", "LeaseLostError",
    "MsgpackCodec", "NamespaceMissingError",
    "NondeterminismError", "NotRegisteredError", "OrchestrationCancelledError",
    "OrchestrationContext", "OrchestrationError", "OrchestrationFailedError",
    "PayloadTooLargeError", "RedisServer", "RedisStore", "RegistrationError", "RetryPolicy",
    "StoreError", "StoreFullError", "StoreUnavailableError", "TaskFailedError", "ValidationError",
    "WaitTimeoutError", "Worker", "WorkerOptions", "__version__", "run_worker",
    "HistoryLimitExceededError", "StreamItem", "UpdateFailedError", "UpdateRejectedError",
    # jobs
    "ExistingJobPolicy", "JobCancelledError", "JobError", "JobExistsError", "JobFailedError",
    "JobHandle", "JobNotFoundError", "JobState", "JobStateError", "JobStatus", "SyncClient",
    "ScheduleInfo", "ScheduleNotFoundError", "SyncInstanceHandle", "Limit",
    # reliability (issue 19): the turn watchdog, Redis Functions, replicated durability
    "TurnTimeoutError", "TurnCrashedWorkerError", "FunctionsMissingError",
    "ReplicationTimeoutError",
    # reset (docs/deploying.md)
    "ResetPointError",
}  # fmt: skip


def test_all_is_pinned_and_sorted() -> None:
    assert set(durable_redis.__all__) == EXPECTED
    assert list(durable_redis.__all__) == sorted(durable_redis.__all__)
    for name in durable_redis.__all__:
        assert hasattr(durable_redis, name), name


def test_every_error_derives_from_the_root_and_is_exported() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, errors.DurableRedisError), name
            assert name in durable_redis.__all__, name
