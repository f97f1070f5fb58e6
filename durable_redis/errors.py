"""Every exception durable_redis raises, drawn once.

::

    DurableRedisError                      root of every error this library raises
    ├── ConfigurationError                 bad settings; unsafe Redis (eviction policy, ...)
    ├── RegistrationError                  duplicate or invalid orchestration / activity names
    ├── NotRegisteredError                 a name no App on this worker knows
    ├── ValidationError                    bad input from a caller; nothing was written
    │   ├── InvalidIdError                 empty, huge, non-UTF-8 or forbidden characters
    │   ├── ResetPointError                a reset point with work in flight, or past the end
    │   └── PayloadTooLargeError           an encoded payload over the size limit (also a
    │                                      CodecError: the value cannot be encoded in the limit)
    ├── CodecError                         a value that cannot be encoded or decoded
    ├── StoreError                         the storage layer refused or failed
    │   ├── LeaseLostError                 a fenced token is stale or its lease expired
    │   ├── InstanceExistsError            start with an id that exists (policy "fail")
    │   ├── InstanceNotFoundError          no instance with that id
    │   ├── InstanceRunningError           delete of a running instance without force
    │   ├── InstanceTerminalError          cancel or event for an instance that has ended
    │   ├── NamespaceMissingError          the namespace's data vanished from Redis
    │   ├── StoreUnavailableError          Redis unreachable past the retry window
    │   ├── StoreFullError                 Redis out of memory (maxmemory, noeviction): a
    │   │                                  write refused, nothing of the call written
    │   ├── ReplicationTimeoutError        durability="replicated": a write reached no replica
    │   │                                  in time (it is stored on the primary)
    │   ├── FunctionsMissingError          scripts="functions" but the function library is
    │   │                                  not loaded at this version (`functions load`)
    │   ├── JobExistsError                 enqueue with a job id that exists (policy "fail")
    │   ├── JobNotFoundError               no job with that id (never enqueued, or expired)
    │   ├── JobStateError                  retry of a job that is not failed or cancelled
    │   └── ScheduleNotFoundError          no schedule with that name
    ├── NondeterminismError                orchestration code no longer matches its history
    ├── TurnTimeoutError                   a turn overran turn_timeout (spinning/blocking code):
    │                                      the watchdog interrupted it, the instance is held
    ├── TurnCrashedWorkerError             an instance's turn killed its worker max_turn_crashes
    │                                      times (os._exit, segfault): held, not run again
    ├── HistoryLimitExceededError          an execution reached max_history_events (the
    │                                      instance fails with this type name)
    ├── TaskFailedError                    inside an orchestration: durable work failed
    │   ├── ActivityFailedError            an activity raised (type, message, traceback)
    │   ├── ActivityTimeoutError           an attempt ran past its per-attempt timeout
    │   └── ChildOrchestrationFailedError  a sub-orchestration failed
    ├── OrchestrationError                 seen by clients: an orchestration did not complete
    │   ├── OrchestrationFailedError       it failed (details attached)
    │   ├── OrchestrationCancelledError    it was cancelled
    │   ├── WaitTimeoutError               wait_for_completion / job.result timed out (it may
    │   │                                  still finish)
    │   └── UpdateFailedError              an update's handler raised, or the instance ended
    │       └── UpdateRejectedError        the validator (or a missing handler) refused it;
    │                                      nothing was recorded
    └── JobError                           seen by clients: a job did not complete
        ├── JobFailedError                 its activity failed (details attached)
        └── JobCancelledError              it was cancelled

Control-flow signals used inside orchestrations derive from ``BaseException`` (see
``durable_redis.core``), so a user's ``except Exception:`` cannot swallow them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ActivityFailedError",
    "ActivityTimeoutError",
    "ChildOrchestrationFailedError",
    "CodecError",
    "ConfigurationError",
    "DurableRedisError",
    "FailureDetails",
    "FunctionsMissingError",
    "HistoryLimitExceededError",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "InstanceRunningError",
    "InstanceTerminalError",
    "InvalidIdError",
    "JobCancelledError",
    "JobError",
    "JobExistsError",
    "JobFailedError",
    "JobNotFoundError",
    "JobStateError",
    "LeaseLostError",
    "NamespaceMissingError",
    "NondeterminismError",
    "NotRegisteredError",
    "OrchestrationCancelledError",
    "OrchestrationError",
    "OrchestrationFailedError",
    "PayloadTooLargeError",
    "RegistrationError",
    "ReplicationTimeoutError",
    "ResetPointError",
    "ScheduleNotFoundError",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
    "TaskFailedError",
    "TurnCrashedWorkerError",
    "TurnTimeoutError",
    "UpdateFailedError",
    "UpdateRejectedError",
    "ValidationError",
    "WaitTimeoutError",
]


@dataclass(frozen=True, slots=True)
class FailureDetails:
    """A failure as recorded in history: portable, never a pickled exception.

    ``kind`` is a ``durable_redis.contract.FailureKind`` value: ``"application"`` (user code
    raised), ``"timeout"``, ``"cancelled"``, ``"poison"`` (attempts exhausted by crashes),
    ``"nondeterminism"``, ``"configuration"`` (unregistered name, bad session use, limits),
    ``"rejected"`` (an update's validator), ``"history_limit"``; stored as the plain string.
    """

    kind: str
    type_name: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


class DurableRedisError(Exception):
    """Root of every error durable_redis raises."""


class ConfigurationError(DurableRedisError):
    """Invalid settings, or a Redis server configured unsafely."""


class RegistrationError(DurableRedisError):
    """A duplicate or invalid orchestration or activity registration."""


class NotRegisteredError(DurableRedisError):
    """No orchestration or activity with this name is registered."""


class ValidationError(DurableRedisError, ValueError):
    """Bad input from a caller. Nothing was written."""


class InvalidIdError(ValidationError):
    """An instance, session or event id that is empty, too long or has forbidden characters."""


class ResetPointError(ValidationError):
    """A reset point (``client.reset``) where work is in flight, past the end of the
    execution, or not an event id or shortcut; the message lists the valid points."""


class CodecError(DurableRedisError):
    """A value could not be encoded, or bytes could not be decoded."""


class PayloadTooLargeError(ValidationError, CodecError):
    """An encoded payload is larger than the configured limit (``max_payload_bytes``).

    Also a :class:`CodecError`, so every place that turns an unencodable value into a failure
    (an orchestration's output, an activity's result) handles it the same way.
    """


class StoreError(DurableRedisError):
    """The storage layer refused an operation or failed."""


class LeaseLostError(StoreError):
    """The fenced token is stale or its lease has expired: another holder may own the work."""


class InstanceExistsError(StoreError):
    """An instance with this id already exists."""


class InstanceNotFoundError(StoreError, LookupError):
    """No instance with this id exists."""


class InstanceRunningError(StoreError):
    """The instance is still running; pass ``force=True`` to delete it anyway."""


class InstanceTerminalError(StoreError):
    """The instance has ended (completed, failed or cancelled): a cancel or an event for it
    would never be read, so nothing was written. ``status`` says how it ended."""

    def __init__(self, message: str, *, instance_id: str = "", status: str = "") -> None:
        super().__init__(message)
        self.instance_id = instance_id
        self.status = status


class NamespaceMissingError(StoreError):
    """The namespace's metadata vanished (Redis restarted without persistence, or was flushed)."""


class StoreUnavailableError(StoreError, ConnectionError):
    """Redis could not be reached: refused, timed out, or down longer than the retry window.

    Nothing is known to have changed; every operation is safe to retry.
    """


class StoreFullError(StoreError):
    """Redis refused a write because its memory is full (``used_memory`` over ``maxmemory``
    under the ``noeviction`` policy: Redis's ``OOM`` reply).

    Redis refuses a script at its first write, so the refused call wrote nothing; reads keep
    working. Free memory (retention, ``durable-redis`` prune commands) or raise ``maxmemory``,
    then retry: the call is safe to repeat.
    """


class ReplicationTimeoutError(StoreError):
    """``durability="replicated"``: the write was applied on the primary but no replica
    acknowledged it within ``replica_timeout`` (``WAIT``/``WAITAOF``). It is not lost on the
    primary; a failover before the replica caught up could lose it."""

    def __init__(self, message: str, *, replicas: int = 0, wanted: int = 1) -> None:
        super().__init__(message)
        self.replicas = replicas
        self.wanted = wanted


class FunctionsMissingError(StoreError):
    """``scripts="functions"``: the server has no durable_redis function library at the
    version this code needs (run ``durable-redis functions load`` as an admin)."""


class JobExistsError(StoreError):
    """A job with this id exists already (enqueue with ``if_exists="fail"``)."""


class JobNotFoundError(StoreError, LookupError):
    """No job with this id: never enqueued, or its result ttl ran out."""


class JobStateError(StoreError):
    """The job is not in a state that allows the operation (retry of a job that did not fail)."""


class ScheduleNotFoundError(StoreError, LookupError):
    """No schedule with this name."""


class NondeterminismError(DurableRedisError):
    """Orchestration code no longer matches the history it is replaying.

    The message names the instance, the event position, what was recorded and what the code
    did now.
    """

    def __init__(
        self,
        message: str,
        *,
        instance_id: str = "",
        position: int | None = None,
        recorded: str = "",
        actual: str = "",
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.instance_id = instance_id
        self.position = position
        self.recorded = recorded
        #: ``path:line`` of the orchestration code that diverged (the call that issued the
        #: differing command, or the ``await`` it waits at), None when not in user code
        self.source = source
        self.actual = actual


class TurnTimeoutError(DurableRedisError):
    """A turn ran longer than ``WorkerOptions.turn_timeout`` (orchestration code that spins or
    blocks): the watchdog interrupted it and the instance is held with this reason."""

    def __init__(self, message: str, *, elapsed_s: float = 0.0) -> None:
        super().__init__(message)
        self.elapsed_s = elapsed_s


class TurnCrashedWorkerError(DurableRedisError):
    """An instance's turn ended ``max_turn_crashes`` deliveries in a row without a commit or a
    hand-back (its code killed the worker: ``os._exit``, a segfault, the OOM killer): the
    instance is held and its code is not run again until an operator fails it."""


class HistoryLimitExceededError(DurableRedisError):
    """An execution reached its ``max_history_events``; the instance failed with this type
    name (``FailureDetails.kind == "history_limit"``). Continue-as-new once
    ``ctx.continue_as_new_suggested`` turns true to avoid it."""


class TaskFailedError(DurableRedisError):
    """Durable work awaited inside an orchestration failed. Catchable with ``try/except``."""

    def __init__(self, message: str, details: FailureDetails) -> None:
        super().__init__(message)
        self.details = details

    @property
    def type_name(self) -> str:
        """The name of the original exception type (e.g. ``"ValueError"``)."""
        return self.details.type_name

    @property
    def traceback_text(self) -> str:
        """The original traceback, as text."""
        return self.details.traceback


class ActivityFailedError(TaskFailedError):
    """An activity raised; carries the original type name, message and traceback text."""


class ActivityTimeoutError(TaskFailedError):
    """An activity attempt ran past its per-attempt timeout."""


class ChildOrchestrationFailedError(TaskFailedError):
    """A sub-orchestration failed."""


class OrchestrationError(DurableRedisError):
    """Seen by clients: an orchestration did not complete successfully."""


class OrchestrationFailedError(OrchestrationError):
    """The orchestration failed; ``details`` says why."""

    def __init__(self, instance_id: str, details: FailureDetails) -> None:
        super().__init__(f"orchestration {instance_id!r} failed: {details}")
        self.instance_id = instance_id
        self.details = details


class OrchestrationCancelledError(OrchestrationError):
    """The orchestration was cancelled."""

    def __init__(self, instance_id: str, reason: str = "") -> None:
        super().__init__(f"orchestration {instance_id!r} was cancelled: {reason}")
        self.instance_id = instance_id
        self.reason = reason


class WaitTimeoutError(OrchestrationError, TimeoutError):
    """``wait_for_completion`` timed out; the orchestration may still finish later."""


class UpdateFailedError(OrchestrationError):
    """``client.update``: the handler raised, or the instance ended first; ``details`` says why."""

    def __init__(self, instance_id: str, name: str, details: FailureDetails) -> None:
        super().__init__(f"update {name!r} of {instance_id!r} failed: {details}")
        self.instance_id = instance_id
        self.name = name
        self.details = details


class UpdateRejectedError(UpdateFailedError):
    """The update's validator refused it (or no handler has that name); nothing was recorded."""


class JobError(DurableRedisError):
    """Seen by clients: a job did not complete successfully."""


class JobFailedError(JobError):
    """The job's activity failed (after its retries); ``details`` has the original type name,
    message and traceback text."""

    def __init__(self, job_id: str, details: FailureDetails) -> None:
        super().__init__(f"job {job_id!r} failed: {details}")
        self.job_id = job_id
        self.details = details

    @property
    def type_name(self) -> str:
        return self.details.type_name


class JobCancelledError(JobError):
    """The job was cancelled before it completed."""

    def __init__(self, job_id: str, reason: str = "") -> None:
        super().__init__(f"job {job_id!r} was cancelled" + (f": {reason}" if reason else ""))
        self.job_id = job_id
        self.reason = reason
