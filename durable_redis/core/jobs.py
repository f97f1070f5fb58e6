"""Jobs: one activity call with no orchestration around it. ``JobTask`` is what a job's work
item carries (its input and options), encoded with the same schema machinery as history.

A job's retry policy is flattened into the task, so a worker decides retries from the stored
task alone: attempt ``n`` failed, ``n < max_attempts`` and the error is retryable -> queued again
after ``RetryPolicy.delay_ms(n)`` (a durable timer on the Redis clock, not a sleep).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgpack  # type: ignore[import-untyped]

from durable_redis.core._serial import SCHEMA_VERSION, Schema
from durable_redis.core.retry import Backoff, RetryPolicy
from durable_redis.errors import CodecError, InvalidIdError, ValidationError

__all__ = [
    "JobTask",
    "Limit",
    "decode_job_task",
    "encode_job_task",
    "encode_job_tasks",
    "job_task",
]


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


_MAX_KEY_BYTES = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """Flow control by key for jobs (docs/routing.md), judged atomically in the fetch and
    enqueue scripts of the key's partition.

    ``key``: a string (``"tenant-7"``), a template filled from the input's fields or mapping
    keys (``"tenant:{tenant}"``), or a function of the input returning a string. Every job of
    one key (and queue) is one group: the groups take turns at each fetch (fairness).

    - ``concurrency``: at most this many jobs of the key running at once (``1`` = singleton);
      a slot is held by the job's lease (a killed worker's slot frees when it expires).
    - ``rate`` jobs per ``per`` seconds (GCRA on the Redis clock, ``burst`` at once; default
      1 = evenly spaced): a job over it waits, scheduled for when it may run.
    - ``debounce`` seconds: run once after a quiet period; an enqueue while the key's job is
      still waiting replaces its input and pushes its time (the handle is that job's).
    - ``throttle`` seconds: at most one job per window, the first; the enqueues after it in
      the window are dropped and get the kept job's handle.
    """

    key: str | Callable[[Any], str]
    concurrency: int | None = None
    rate: int | None = None
    per: float | timedelta = 1.0
    burst: int = 1
    debounce: float | timedelta | None = None
    throttle: float | timedelta | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.key, str) and self.key) and not callable(self.key):
            raise ValidationError(f"Limit key must be a non-empty str or a function: {self.key!r}")
        for name in ("concurrency", "rate"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValidationError(f"Limit {name} must be an int >= 1, got {value!r}")
        if not _is_int(self.burst) or self.burst < 1:
            raise ValidationError(f"Limit burst must be an int >= 1, got {self.burst!r}")
        if _ms(self.per, "per") < 1:
            raise ValidationError(f"Limit per must be at least 1 ms, got {self.per!r}")
        if self.debounce is not None and self.throttle is not None:
            raise ValidationError("Limit takes debounce or throttle, not both")
        for name in ("debounce", "throttle"):
            value = getattr(self, name)
            if value is not None and _ms(value, name) < 1:
                raise ValidationError(f"Limit {name} must be at least 1 ms, got {value!r}")

    def key_for(self, input: Any) -> str:
        """The flow key of a job with this input (InvalidIdError if it is not a usable key)."""
        if callable(self.key):
            key = self.key(input)
        elif "{" in self.key:
            try:
                key = self.key.format_map(_Fields(input))
            except (KeyError, AttributeError, IndexError, ValueError) as exc:
                raise ValidationError(
                    f"Limit key template {self.key!r} does not fit the input: {exc}"
                ) from None
        else:
            key = self.key
        if not isinstance(key, str) or not key or "\n" in key or "\x00" in key:
            raise InvalidIdError(f"a flow key must be a non-empty str, no newline: {key!r}")
        if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
            raise InvalidIdError(f"a flow key is at most {_MAX_KEY_BYTES} bytes: {key[:40]!r}...")
        return key

    @property
    def flow(self) -> str:
        """The stored form of the limits: "<concurrency> <rate> <per ms> <burst>" ('-' none)."""
        rate = "-" if self.rate is None else str(self.rate)
        per = "-" if self.rate is None else str(_ms(self.per, "per"))
        conc = "-" if self.concurrency is None else str(self.concurrency)
        return f"{conc} {rate} {per} {self.burst}"

    @property
    def start_mode(self) -> str:
        """The limit of an orchestration start (docs/routing.md "Orchestration starts"):
        "singleton" (``concurrency=1``), "debounce <ms>" or "throttle <ms>"; exactly one of
        them (ValidationError otherwise: a start takes no rate nor a concurrency above 1)."""
        if self.rate is not None:
            raise ValidationError("an orchestration start's Limit takes no rate")
        if self.concurrency not in (None, 1):
            raise ValidationError(
                "an orchestration start's Limit takes concurrency=1 (a singleton) only, "
                f"got {self.concurrency!r}"
            )
        modes = [m for m in ("singleton" if self.concurrency == 1 else "", self.mode) if m]
        if len(modes) != 1:
            raise ValidationError(
                "an orchestration start's Limit takes one of concurrency=1, debounce, throttle"
            )
        return modes[0]

    @property
    def mode(self) -> str:
        """ "debounce <ms>", "throttle <ms>" or ""."""
        if self.debounce is not None:
            return f"debounce {_ms(self.debounce, 'debounce')}"
        if self.throttle is not None:
            return f"throttle {_ms(self.throttle, 'throttle')}"
        return ""


class _Fields:
    """A template's view of a job input: mapping keys, else attributes."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __getitem__(self, name: str) -> Any:
        if isinstance(self._value, Mapping):
            return self._value[name]
        return getattr(self._value, name)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ms(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise ValidationError(f"Limit {what} must be seconds or a timedelta, got {value!r}")
    seconds = _seconds(value)
    if seconds != seconds or seconds < 0:
        raise ValidationError(f"Limit {what} must be a non-negative duration, got {value!r}")
    return round(seconds * 1000)
