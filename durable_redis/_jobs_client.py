"""The job half of the client: enqueue one activity call as a background job, then wait for
its result, read its status, cancel or retry it.

::

    job = await client.enqueue(send_email, Email(to="a@b.c"), delay=60)
    status = await job.status()          # JobStatus(state=JobState.QUEUED, ...)
    receipt = await job.result(timeout=30)

Everything is checked before anything is written: the activity's name (against the client's
app, when it has one), the input (encodable, within the codec's size limit), the job id, the
times (``at`` must be timezone-aware, ``delay`` >= 0), priority and ttl.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from durable_redis import core
from durable_redis._identity import activity_identity
from durable_redis.core import App, Codec
from durable_redis.core.jobs import (
    Limit,
    encode_job_tasks,
    job_task,
    validate_queue,
)
from durable_redis.core.retry import RetryPolicy
from durable_redis.errors import (
    FailureDetails,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    NotRegisteredError,
    ValidationError,
    WaitTimeoutError,
)
from durable_redis.ids import validate_id
from durable_redis.storage.job_types import (
    ExistingJobPolicy,
    JobQueueInfo,
    JobRecord,
    JobState,
    KeptJob,
    NewJob,
)

if TYPE_CHECKING:
    from durable_redis.core.registry import ActivityContext

__all__ = ["DEFAULT_RESULT_TTL", "JobHandle", "JobStatus", "JobsClientMixin"]

R = TypeVar("R")
I = TypeVar("I")  # noqa: E741

DEFAULT_RESULT_TTL = timedelta(hours=1)
MAX_PRIORITY = (1 << 15) - 1
_WAIT_CHUNK_S = 30.0


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job as the client reports it (payloads decoded, times as UTC datetimes)."""

    job_id: str
    name: str
    state: JobState
    attempt: int  # retry-policy attempt, 1-based
    deliveries: int  # fetches of the current attempt (> 1 after a crash)
    progress: Any
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    error: FailureDetails | None  # the failure (or the last failed attempt's, while retrying)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _status(rec: JobRecord, codec: Codec) -> JobStatus:
    return JobStatus(
        job_id=rec.job_id,
        name=rec.name,
        state=rec.state,
        attempt=rec.attempt,
        deliveries=rec.deliveries,
        progress=codec.decode(rec.progress) if rec.progress is not None else None,
        created_at=_dt(rec.created_at_ms) or datetime.fromtimestamp(0, tz=UTC),
        started_at=_dt(rec.started_at_ms),
        finished_at=_dt(rec.finished_at_ms),
        worker_id=rec.worker_id,
        error=core.decode_failure(rec.error) if rec.error is not None else None,
    )


class JobHandle(Generic[R]):
    """A job enqueued (or found) by a client. ``R`` is its activity's result type."""

    __slots__ = ("_client", "_result_type", "id")

    def __init__(self, client: JobsClientMixin, job_id: str, result_type: Any = None) -> None:
        self._client = client
        self.id = job_id
        self._result_type = result_type

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    async def status(self) -> JobStatus:
        """JobNotFoundError if the job is unknown (or its result ttl ran out)."""
        rec = await self._client._job_store().get_job(self.id)
        if rec is None:
            raise JobNotFoundError(f"no job {self.id!r} (never enqueued, or its result expired)")
        return _status(rec, self._client.codec)

    async def result(self, *, timeout: float | timedelta | None = None) -> R:
        """Wait for the job to end; its activity's return value.

        Raises JobFailedError (the activity's failure: type name, message, traceback),
        JobCancelledError, WaitTimeoutError (the job may still finish), or JobNotFoundError.
        """
        seconds = _seconds(timeout)
        store = self._client._job_store()
        limit = math.inf if seconds is None else seconds
        waited = 0.0
        while True:
            chunk = min(limit - waited, _WAIT_CHUNK_S)
            rec = await store.wait_job_ended(self.id, chunk)
            if rec is None:
                raise JobNotFoundError(
                    f"no job {self.id!r} (never enqueued, or its result expired)"
                )
            if rec.state.is_terminal:
                return self._outcome(rec)
            waited += chunk
            if waited >= limit:
                raise WaitTimeoutError(f"job {self.id!r} still {rec.state.value} after {seconds}s")

    def _outcome(self, rec: JobRecord) -> R:
        codec = self._client.codec
        if rec.state is JobState.COMPLETED:
            if rec.output is None:
                return None  # type: ignore[return-value]
            if self._result_type is not None:
                return codec.decode(rec.output, self._result_type)  # type: ignore[no-any-return]
            return codec.decode(rec.output)  # type: ignore[no-any-return]
        details = (
            core.decode_failure(rec.error)
            if rec.error is not None
            else FailureDetails("application", "Unknown", "no details recorded")
        )
        if rec.state is JobState.CANCELLED:
            raise JobCancelledError(self.id, details.message)
        raise JobFailedError(self.id, details)

    async def cancel(self, reason: str = "") -> JobState:
        """Cancel the job (a running one is told through its lease); its state before."""
        return await self._client.cancel_job(self.id, reason)

    async def retry(self) -> None:
        """Queue a failed or cancelled job again (JobStateError otherwise)."""
        await self._client.retry_job(self.id)


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _ms_option(value: float | timedelta | None, what: str, *, allow_zero: bool) -> int | None:
    seconds = _seconds(value)
    if seconds is None:
        return None
    if isinstance(value, bool) or seconds != seconds or seconds < 0:
        raise ValidationError(f"{what} must be a non-negative duration, got {value!r}")
    if seconds == 0 and not allow_zero:
        raise ValidationError(f"{what} must be positive, got {value!r}")
    return round(seconds * 1000)


class JobsClientMixin:
    """Job operations of :class:`~durable_redis.Client` (``store`` must be a RedisStore)."""

    app: App | None
    codec: Codec

    async def _ensure_initialized(self) -> None:  # provided by Client
        raise NotImplementedError

    def _job_store(self) -> Any:
        return getattr(self, "store")  # noqa: B009 (Client's attribute, typed Store there)

    # -- enqueue -----------------------------------------------------------------------------
    @overload
    async def enqueue(
        self,
        activity: Callable[[ActivityContext, I], Awaitable[R]],
        input: I,
        *,
        job_id: str | None = ...,
        delay: float | timedelta | None = ...,
        at: datetime | None = ...,
        priority: int = ...,
        queue: str | None = ...,
        retry: RetryPolicy | None = ...,
        timeout: float | timedelta | None = ...,
        result_ttl: float | timedelta = ...,
        if_exists: ExistingJobPolicy | str = ...,
        limit: Limit | None = ...,
    ) -> JobHandle[R]: ...

    @overload
    async def enqueue(
        self,
        activity: Callable[[ActivityContext, I], R],
        input: I,
        *,
        job_id: str | None = ...,
        delay: float | timedelta | None = ...,
        at: datetime | None = ...,
        priority: int = ...,
        queue: str | None = ...,
        retry: RetryPolicy | None = ...,
        timeout: float | timedelta | None = ...,
        result_ttl: float | timedelta = ...,
        if_exists: ExistingJobPolicy | str = ...,
        limit: Limit | None = ...,
    ) -> JobHandle[R]: ...

    @overload
    async def enqueue(
        self,
        activity: str | Callable[..., Any],
        input: Any = ...,
        *,
        job_id: str | None = ...,
        delay: float | timedelta | None = ...,
        at: datetime | None = ...,
        priority: int = ...,
        queue: str | None = ...,
        retry: RetryPolicy | None = ...,
        timeout: float | timedelta | None = ...,
        result_ttl: float | timedelta = ...,
        if_exists: ExistingJobPolicy | str = ...,
        limit: Limit | None = ...,
    ) -> JobHandle[Any]: ...

    async def enqueue(
        self,
        activity: str | Callable[..., Any],
        input: Any = None,
        *,
        job_id: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        result_ttl: float | timedelta = DEFAULT_RESULT_TTL,
        if_exists: ExistingJobPolicy | str = ExistingJobPolicy.KEEP,
        limit: Limit | None = None,
    ) -> JobHandle[Any]:
        """Enqueue ``activity(ctx, input)`` as a background job; its handle.

        ``job_id`` dedupes: an id that exists is kept as it is (``if_exists="keep"``, the
        default, also for a finished job whose result is still kept), re-created if finished
        (``"replace"``), or refused (``"fail"``: JobExistsError). ``delay`` (seconds or
        timedelta, judged on the Redis clock) or ``at`` (timezone-aware) defer it; higher
        ``priority`` runs first (FIFO within a priority, range +-32767). ``queue`` routes it to
        the workers serving that queue (default: the activity's ``@app.activity(queue=)``, else
        ``"default"``); a paused queue keeps it queued. ``retry`` retries failed
        attempts on durable timers (default: one attempt); ``timeout`` bounds each attempt.
        The result (or failure) is kept for ``result_ttl`` (default 1 hour; 0 = keep nothing).
        ``limit`` (default: the activity's ``@app.activity(limit=)``): flow control by key,
        ``Limit(key=..., concurrency=, rate=, per=, burst=, debounce=, throttle=)``
        (docs/routing.md). A debounced or throttled enqueue returns the kept job's handle; a
        keyed job's id gets a ``:k`` suffix when needed to live in its key's partition.
        """
        [handle] = await self.enqueue_many(
            activity,
            [input],
            job_ids=None if job_id is None else [job_id],
            delay=delay,
            at=at,
            priority=priority,
            queue=queue,
            retry=retry,
            timeout=timeout,
            result_ttl=result_ttl,
            if_exists=if_exists,
            limit=limit,
        )
        return handle

    async def enqueue_many(
        self,
        activity: str | Callable[..., Any],
        inputs: Iterable[Any],
        *,
        job_ids: Sequence[str] | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        result_ttl: float | timedelta = DEFAULT_RESULT_TTL,
        if_exists: ExistingJobPolicy | str = ExistingJobPolicy.KEEP,
        limit: Limit | None = None,
    ) -> list[JobHandle[Any]]:
        """Enqueue one job per input, one round trip (one script call per partition and 1,000
        jobs). Same options as :meth:`enqueue`, for every job; all are checked first."""

        name, result_type, registered_queue = activity_identity(activity, self.app)
        target = validate_queue(registered_queue if queue is None else queue)
        if limit is None:
            limit = _activity_limit(activity, self.app)
        elif not isinstance(limit, Limit):
            raise ValidationError(f"limit must be a Limit, got {limit!r}")
        values = list(inputs)
        given: list[str] | None = None
        if job_ids is not None:
            given = [validate_id(j, "job id") for j in job_ids]
            if len(given) != len(values):
                raise ValidationError(f"{len(given)} job ids for {len(values)} inputs")
        keys = None if limit is None else [limit.key_for(value) for value in values]
        ids = given or []  # keyed jobs: chosen below, in their keys' partitions
        if keys is None and given is None:
            ids = [os.urandom(16).hex() for _ in values]  # as unique as a uuid4, 4x cheaper
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ValidationError(f"priority must be an int, got {priority!r}")
        if abs(priority) > MAX_PRIORITY:
            raise ValidationError(f"priority must be within +-{MAX_PRIORITY}, got {priority}")
        delay_ms = _ms_option(delay, "delay", allow_zero=True)
        at_ms = None
        if at is not None:
            if delay is not None:
                raise ValidationError("pass delay or at, not both")
            if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
                raise ValidationError(f"at must be a timezone-aware datetime, got {at!r}")
            at_ms = round(at.timestamp() * 1000)
        timeout_ms = _ms_option(timeout, "timeout", allow_zero=False)
        ttl_ms = _ms_option(result_ttl, "result_ttl", allow_zero=True)
        if ttl_ms is None:
            raise ValidationError("result_ttl must be a duration (0 = keep nothing)")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValidationError(f"retry must be a RetryPolicy, got {retry!r}")
        try:
            policy = ExistingJobPolicy(if_exists)
        except ValueError:
            known = ", ".join(p.value for p in ExistingJobPolicy)
            raise ValidationError(f"unknown if_exists {if_exists!r} (one of {known})") from None
        encode = self.codec.encode
        template = job_task(b"", retry=retry, timeout_ms=timeout_ms)
        specs = encode_job_tasks(template, [encode(value) for value in values])
        await self._ensure_initialized()
        store = self._job_store()
        if keys is not None and limit is not None:
            # every job of a key lives in the key's partition (its limits are judged there)
            flow, mode = limit.flow, limit.mode
            ids = [
                store.job_id_for_key(None if given is None else given[i], key)
                for i, key in enumerate(keys)
            ]
            common = (priority, delay_ms, at_ms, ttl_ms, target)
            jobs = [
                NewJob(jid, name, spec, *common, key, flow, mode)
                for jid, spec, key in zip(ids, specs, keys, strict=True)
            ]
        else:
            jobs = [
                NewJob(jid, name, spec, priority, delay_ms, at_ms, ttl_ms, target)
                for jid, spec in zip(ids, specs, strict=True)
            ]
        if jobs:
            states = await store.enqueue_jobs(jobs, policy=policy)
            ids = [
                s.job_id if isinstance(s, KeptJob) else j for s, j in zip(states, ids, strict=True)
            ]
        return [JobHandle(self, jid, result_type) for jid in ids]

    # -- by id ---------------------------------------------------------------------------------
    async def get_job(self, job_id: str, *, result_type: Any = None) -> JobHandle[Any]:
        """The handle of an existing job (JobNotFoundError if unknown or expired)."""

        validate_id(job_id, "job id")
        await self._ensure_initialized()
        rec = await self._job_store().get_job(job_id)
        if rec is None:
            raise JobNotFoundError(f"no job {job_id!r} (never enqueued, or its result expired)")
        if result_type is None and self.app is not None:
            try:
                result_type = self.app.get_activity(rec.name).result_type
            except NotRegisteredError:
                result_type = None
        return JobHandle(self, job_id, result_type)

    async def cancel_job(self, job_id: str, reason: str = "") -> JobState:
        """Cancel a queued or running job (a running one by lock stealing: its worker stops it
        and its late result is refused); a finished job is left alone. Its state before."""

        validate_id(job_id, "job id")
        details = FailureDetails("cancelled", "JobCancelledError", reason or "cancelled")
        await self._ensure_initialized()
        state: JobState = await self._job_store().cancel_job(job_id, core.encode_failure(details))
        return state

    async def retry_job(self, job_id: str) -> None:
        """Queue a failed or cancelled job again from its first attempt (JobStateError else)."""

        validate_id(job_id, "job id")
        await self._ensure_initialized()
        await self._job_store().retry_job(job_id)

    # -- queues --------------------------------------------------------------------------------
    async def pause_queue(self, queue: str) -> bool:
        """Pause a queue: its jobs and activity work items (and new ones) stay queued, no
        worker fetches any; running ones finish. True if it was paused already."""
        validate_queue(queue)
        await self._ensure_initialized()
        was: bool = await self._job_store().set_job_queue_paused(queue, True)
        return was

    async def resume_queue(self, queue: str) -> bool:
        """Resume a paused queue (its waiting workers are woken). True if it was paused."""
        validate_queue(queue)
        await self._ensure_initialized()
        was: bool = await self._job_store().set_job_queue_paused(queue, False)
        await self._job_store().queue_status(queue, wake=True)  # its activity work items too
        return was

    async def list_queues(self) -> list[JobQueueInfo]:
        """Every queue known (jobs enqueued to it, activities routed to it, or paused), and
        "default": jobs ready and delayed, activity work items ready and delayed, running and
        paused (one ``queue_status`` per queue: O(work in flight + delayed) each)."""
        await self._ensure_initialized()
        store = self._job_store()
        out: list[JobQueueInfo] = []
        for info in await store.job_queues():
            status = await store.queue_status(info.name)
            out.append(
                dataclasses.replace(
                    info,
                    work_ready=status.work_ready,
                    work_delayed=status.work_delayed,
                    running=status.running,
                )
            )
        return out

    async def list_jobs(
        self, *, status: JobState | str | None = None, name: str | None = None, limit: int = 100
    ) -> list[JobStatus]:
        """Jobs (oldest first) by state and activity name; finished ones while retained."""
        if not isinstance(limit, int) or limit < 1:
            raise ValidationError("limit must be an int >= 1")
        try:
            state = JobState(status) if status is not None else None
        except ValueError:
            known = ", ".join(s.value for s in JobState)
            raise ValidationError(f"unknown job status {status!r} (one of {known})") from None
        await self._ensure_initialized()
        records = await self._job_store().list_jobs(state=state, name=name, limit=limit)
        return [_status(r, self.codec) for r in records]


def _activity_limit(activity: Any, app: App | None) -> Limit | None:
    """The ``@app.activity(limit=)`` of an activity function or name (None: none known)."""
    if isinstance(activity, str):
        found = getattr(app, "_activities", {}).get(activity) if app is not None else None
        return getattr(found, "limit", None)
    meta = core.activity_metadata(activity)
    return meta.limit
