"""Jobs: one activity call with no orchestration around it. ``JobTask`` is what a job's work
item carries (its input and options), encoded with the same schema machinery as history.

A job's retry policy is flattened into the task, so a worker decides retries from the stored
task alone: attempt ``n`` failed, ``n < max_attempts`` and the error is retryable -> queued again
after ``RetryPolicy.delay_ms(n)`` (a durable timer on the Redis clock, not a sleep).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped]

from durable_redis.core._serial import SCHEMA_VERSION, Schema
from durable_redis.core.retry import Backoff, RetryPolicy
from durable_redis.errors import CodecError, InvalidIdError

__all__ = ["JobTask", "decode_job_task", "encode_job_task", "encode_job_tasks", "job_task"]


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


_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_QUEUE = "default"


MAX_PRIORITY = (1 << 15) - 1  # |priority| of a job or an activity call (exact in a ZSET score)


def validate_queue(value: object) -> str:
    """A queue's name: 1-64 of A-Z a-z 0-9 _ . - (it becomes part of Redis keys)."""
    if not isinstance(value, str) or not _QUEUE_NAME.fullmatch(value):
        raise InvalidIdError(f"queue name must be 1-64 of A-Z a-z 0-9 _ . -, got {value!r}")
    return value


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
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(JobTask) if f.name != "input"}


def encode_job_task(task: JobTask) -> bytes:
    return encode_job_tasks(task, [task.input])[0]


def encode_job_tasks(template: JobTask, inputs: Sequence[bytes]) -> list[bytes]:
    """The encoding of ``template`` with each of ``inputs`` as its input, built once for the
    batch. The record is the schema's (``{"v", "k", field: value}``) with the fields at their
    defaults left out (decoding restores them), so a job with default options is small."""
    record: dict[str, object] = {"v": SCHEMA_VERSION, "k": "JobTask"}
    for name, default in _DEFAULTS.items():
        value = getattr(template, name)
        if value != default:
            record[name] = list(value) if isinstance(value, tuple) else value
    try:
        head: bytes = msgpack.packb(record, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode a job task: {exc}") from exc
    count = len(record) + 1  # fixmap (< 16 entries): its first byte holds the count
    prefix = bytes([0x80 | count]) + head[1:] + msgpack.packb("input")
    return [prefix + msgpack.packb(data, use_bin_type=True) for data in inputs]


def decode_job_task(data: bytes) -> JobTask:
    """CodecError for bad bytes or newer schema versions."""
    return _JOBS.decode(data)
