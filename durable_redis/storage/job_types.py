"""The job part of the Store contract: types and the ``JobStore`` protocol.

A job is one activity call with no orchestration around it, stored in the partition of its own
id (``lua/includes/jobs.lua`` lists its fields). The store never decodes a job's ``spec`` (its
input and options, encoded by ``durable_redis.core``) nor its output, error or progress.

Lifecycle: ``queued`` (ready, or delayed until a visible time) -> ``running`` (leased, fenced
token) -> ``completed`` / ``failed`` / ``cancelled``; a retry goes back to ``queued`` on a
durable timer. Terminal jobs are kept for their ``result_ttl_ms`` (0 = removed at once).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FLOW_LIMITS",
    "ExistingJobPolicy",
    "JobAck",
    "JobLease",
    "JobOutcome",
    "JobQueueInfo",
    "JobRecord",
    "JobState",
    "JobStore",
    "KeptJob",
    "NewJob",
]

FLOW_LIMITS = re.compile(r"(-|[1-9][0-9]*) (-|[1-9][0-9]*) (-|[1-9][0-9]*) [1-9][0-9]*")
"""The stored form of a key's limits, ``Limit.flow``: "<concurrency> <rate> <per ms> <burst>"."""


class JobState(enum.StrEnum):
    QUEUED = "queued"  # ready, or delayed until its visible time (a retry back-off included)
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


class ExistingJobPolicy(enum.StrEnum):
    """What enqueue does with a job id that exists already."""

    KEEP = "keep"  # dedupe: keep the existing job (live or terminal), enqueue nothing
    REPLACE = "replace"  # re-create a terminal job; a live one is kept
    FAIL = "fail"  # raise JobExistsError, write nothing


class JobOutcome(enum.StrEnum):
    COMPLETED = "c"  # payload: the encoded output
    FAILED = "f"  # payload: the encoded FailureDetails
    RETRY = "r"  # payload: the encoded FailureDetails; queued again after delay_ms
    HAND_BACK = "b"  # queued again after delay_ms; payload b"0" gives the delivery back


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: str
    name: str
    spec: bytes
    priority: int = 0
    delay_ms: int | None = None  # relative to the Redis clock
    at_ms: int | None = None  # absolute, epoch ms
    result_ttl_ms: int = 0
    queue: str = "default"
    # flow control: the job's key, and "<concurrency> <rate> <per ms> <burst>" ('-' = none)
    # and "" / "debounce <ms>" / "throttle <ms>" (core.jobs.Limit builds them); keyed jobs
    # must live in the key's partition (the store's job_id_for_key gives such an id)
    flow_key: str | None = None
    flow: str = "- - - 1"
    flow_mode: str = ""


@dataclass(frozen=True, slots=True)
class KeptJob:
    """An enqueue that was debounced or throttled into an existing job of its flow key."""

    job_id: str


@dataclass(frozen=True, slots=True)
class JobLease:
    job_id: str
    token: str
    name: str
    spec: bytes
    delivery: int  # fetches of the current attempt (> 1 after a crash or a lost lease)
    attempt: int  # retry-policy attempt, 1-based
    lease_until_ms: int


@dataclass(frozen=True, slots=True)
class JobAck:
    lease: JobLease
    outcome: JobOutcome
    payload: bytes = b""
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class JobQueueInfo:
    """A queue: jobs ready and delayed in it, whether it is paused, and (from
    ``client.list_queues``) the activity work items ready and delayed in it and what runs."""

    name: str
    ready: int
    delayed: int
    paused: bool
    work_ready: int = 0  # activity work items (plain, session and keyed)
    work_delayed: int = 0
    running: int = 0  # jobs and activity work items leased (from ``client.list_queues``)


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: str
    name: str
    state: JobState
    spec: bytes
    priority_score: int
    created_at_ms: int
    deliveries: int
    attempt: int
    started_at_ms: int | None
    finished_at_ms: int | None
    worker_id: str | None
    output: bytes | None
    error: bytes | None
    progress: bytes | None
    result_ttl_ms: int


class JobStore(Protocol):
    async def enqueue_jobs(
        self, jobs: Sequence[NewJob], *, policy: ExistingJobPolicy = ExistingJobPolicy.KEEP
    ) -> list[JobState | KeptJob | None]:
        """Create the jobs; one script call per partition (all sent in one round trip).

        Returns, per job, None if it was created, the state of the job that exists, or
        KeptJob (debounced or throttled into that job of its flow key).
        JobExistsError (nothing written in that partition) under FAIL.
        """
        ...

    async def fetch_jobs(
        self,
        worker_id: str,
        *,
        limit: int,
        lock_ms: int,
        wait_ms: int = 0,
        queues: Sequence[str] = ("default",),
        skip_first_try: bool = False,
    ) -> list[JobLease]:
        """Lease up to ``limit`` jobs of ``queues`` (not paused ones; priority, then FIFO in a
        queue); block up to ``wait_ms`` for one (one wait covers every queue).
        ``skip_first_try``: the caller's last fetch drained what it could see, so wait on the
        wake-up marker first (any job since armed it) instead of an empty fetch."""
        ...

    async def ack_jobs(self, acks: Sequence[JobAck]) -> list[bool]:
        """Record outcomes, one script call per partition. Per ack: False if the lease was lost
        (stale token, expired, cancelled); nothing changed for that job then."""
        ...

    async def renew_jobs(
        self, leases: Sequence[JobLease], lock_ms: int, progress: Sequence[bytes | None] = ()
    ) -> list[str]:
        """Extend leases (and store progress where given). Returns the job ids LOST."""
        ...

    async def cancel_job(self, job_id: str, error: bytes) -> JobState:
        """Cancel a live job (a running one by lock stealing); returns its state before.
        JobNotFoundError if unknown; a terminal job is left alone."""
        ...

    async def retry_job(self, job_id: str) -> None:
        """Queue a failed or cancelled job again (JobStateError otherwise)."""
        ...

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def set_job_queue_paused(self, queue: str, paused: bool) -> bool:
        """Pause or resume a job queue in every partition; True if it was paused before."""
        ...

    async def job_queues(self) -> list[JobQueueInfo]: ...

    async def list_jobs(
        self, *, state: JobState | None = None, name: str | None = None, limit: int = 100
    ) -> list[JobRecord]: ...

    async def wait_job_ended(self, job_id: str, timeout_s: float) -> JobRecord | None:
        """Block until the job is terminal (or gone) or ``timeout_s`` passed; its record.

        A record taken from the completion message has only its state, output and error set.
        """
        ...
