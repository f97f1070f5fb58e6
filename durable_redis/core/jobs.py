"""Jobs: one activity call with no orchestration around it. ``JobTask`` is what a job's work
item carries (its input and options), encoded with the same schema machinery as history.

A job's retry policy is flattened into the task, so a worker decides retries from the stored
task alone: attempt ``n`` failed, ``n < max_attempts`` and the error is retryable -> queued again
after ``RetryPolicy.delay_ms(n)`` (a durable timer on the Redis clock, not a sleep).
"""

from __future__ import annotations

from dataclasses import dataclass

from durable_redis.core._serial import Schema
from durable_redis.core.retry import Backoff, RetryPolicy

__all__ = ["JobTask", "decode_job_task", "encode_job_task", "job_task"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTask:
    input: bytes
    timeout_ms: int | None = None  # per attempt
    max_attempts: int = 1
    retry_initial_ms: int = 1000
    retry_backoff: str = "exponential"
    retry_multiplier: float = 2.0
    retry_max_ms: int = 60_000
    non_retryable: tuple[str, ...] = ()

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            initial_delay=self.retry_initial_ms / 1000,
            backoff=Backoff(self.retry_backoff),
            multiplier=self.retry_multiplier,
            max_delay=self.retry_max_ms / 1000,
            non_retryable=self.non_retryable,
        )


def job_task(input: bytes, *, retry: RetryPolicy | None, timeout_ms: int | None) -> JobTask:
    """The task of a job; ``timeout_ms`` (else ``retry.timeout``) bounds each attempt."""
    if retry is None:
        return JobTask(input=input, timeout_ms=timeout_ms)
    names = tuple(e if isinstance(e, str) else e.__name__ for e in retry.non_retryable)
    return JobTask(
        input=input,
        timeout_ms=timeout_ms if timeout_ms is not None else retry.timeout_ms,
        max_attempts=retry.max_attempts,
        retry_initial_ms=round(_seconds(retry.initial_delay) * 1000),
        retry_backoff=retry.backoff.value,
        retry_multiplier=retry.multiplier,
        retry_max_ms=round(_seconds(retry.max_delay) * 1000),
        non_retryable=names,
    )


def _seconds(value: object) -> float:
    total = getattr(value, "total_seconds", None)
    return float(total()) if callable(total) else float(value)  # type: ignore[arg-type]


_JOBS: Schema[JobTask] = Schema("job task", (JobTask,))


def encode_job_task(task: JobTask) -> bytes:
    return _JOBS.encode(task)


def decode_job_task(data: bytes) -> JobTask:
    """CodecError for bad bytes or newer schema versions."""
    return _JOBS.decode(data)
