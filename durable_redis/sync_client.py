"""``SyncClient``: the client for code that is not async (Django, Flask, scripts, a REPL).

::

    client = SyncClient.from_url("redis://localhost:6379/0", app=app)
    job = client.enqueue(send_email, email, delay=60)
    print(job.status().state, job.result(timeout=30))
    client.close()

It runs its own event loop in one daemon thread and forwards every call to an async
:class:`~durable_redis.Client` there, so it is thread-safe: any number of threads may share one
``SyncClient`` (their calls run concurrently on the loop). Do not call it from inside a running
event loop's thread (that is what the async client is for): it raises RuntimeError there
instead of blocking the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from durable_redis._jobs_client import DEFAULT_RESULT_TTL, JobHandle, JobStatus
from durable_redis.client import Client, InstanceHandle, InstanceState
from durable_redis.core import App, Codec
from durable_redis.core.jobs import Limit
from durable_redis.core.retry import RetryPolicy
from durable_redis.storage.activities import QueueStatus
from durable_redis.storage.base import ExistingInstancePolicy
from durable_redis.storage.job_types import ExistingJobPolicy, JobQueueInfo, JobState

__all__ = ["SyncClient", "SyncInstanceHandle", "SyncJobHandle"]

R = TypeVar("R")
T = TypeVar("T")


class _Loop:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="durable-redis-sync-client", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            coro.close()
            raise RuntimeError(
                "SyncClient called from a running event loop; use the async Client there"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class SyncJobHandle(Generic[R]):
    """The blocking twin of :class:`~durable_redis.JobHandle`."""

    __slots__ = ("_handle", "_loop")

    def __init__(self, handle: JobHandle[R], loop: _Loop) -> None:
        self._handle = handle
        self._loop = loop

    @property
    def id(self) -> str:
        return self._handle.id

    def __repr__(self) -> str:
        return f"SyncJobHandle({self.id!r})"

    def status(self) -> JobStatus:
        return self._loop.run(self._handle.status())

    def result(self, *, timeout: float | timedelta | None = None) -> R:
        return self._loop.run(self._handle.result(timeout=timeout))

    def cancel(self, reason: str = "") -> JobState:
        return self._loop.run(self._handle.cancel(reason))

    def retry(self) -> None:
        self._loop.run(self._handle.retry())


class SyncInstanceHandle(str, Generic[R]):
    """The blocking twin of :class:`~durable_redis.InstanceHandle`: what
    :meth:`SyncClient.start` returns. It is the instance id (a ``str``, as before), with
    ``.id``, ``.result()``, ``.state()``, ``.raise_event()`` and ``.cancel()``."""

    _handle: InstanceHandle[R]
    _loop: _Loop

    def __new__(cls, handle: InstanceHandle[R], loop: _Loop) -> SyncInstanceHandle[R]:
        self = super().__new__(cls, handle.id)
        self._handle = handle
        self._loop = loop
        return self

    @property
    def id(self) -> str:
        return str.__str__(self)

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return str, (self.id,)

    def result(self, *, timeout: float | timedelta | None = None) -> R:
        return self._loop.run(self._handle.result(timeout=timeout))

    def state(self) -> InstanceState | None:
        return self._loop.run(self._handle.state())

    def raise_event(self, name: str, data: Any = None) -> None:
        self._loop.run(self._handle.raise_event(name, data))

    def cancel(self, reason: str = "") -> None:
        self._loop.run(self._handle.cancel(reason))


class SyncClient:
    """Blocking, thread-safe client: the operations of :class:`~durable_redis.Client`."""

    def __init__(self, make_client: Callable[[], Client]) -> None:
        self._loop = _Loop()

        async def build() -> Client:
            client = make_client()
            await client.__aenter__()
            return client

        try:
            self._client = self._loop.run(build())
        except BaseException:
            self._loop.stop()
            raise

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "default",
        app: App | None = None,
        codec: Codec | None = None,
    ) -> SyncClient:
        return cls(lambda: Client.from_url(url, namespace=namespace, app=app, codec=codec))

    @property
    def client(self) -> Client:
        """The async client underneath (its methods must run on this client's loop)."""
        return self._client

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.run(self._client.close())
            self._loop.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- jobs ----------------------------------------------------------------------------------
    def enqueue(
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
    ) -> SyncJobHandle[Any]:
        handle = self._loop.run(
            self._client.enqueue(
                activity,
                input,
                job_id=job_id,
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
        )
        return SyncJobHandle(handle, self._loop)

    def enqueue_many(
        self,
        activity: str | Callable[..., Any],
        inputs: Iterable[Any],
        *,
        job_ids: Sequence[str] | None = None,
        **options: Any,
    ) -> list[SyncJobHandle[Any]]:
        handles = self._loop.run(
            self._client.enqueue_many(activity, list(inputs), job_ids=job_ids, **options)
        )
        return [SyncJobHandle(h, self._loop) for h in handles]

    def get_job(self, job_id: str) -> SyncJobHandle[Any]:
        return SyncJobHandle(self._loop.run(self._client.get_job(job_id)), self._loop)

    def list_jobs(
        self, *, status: JobState | str | None = None, name: str | None = None, limit: int = 100
    ) -> list[JobStatus]:
        return self._loop.run(self._client.list_jobs(status=status, name=name, limit=limit))

    def cancel_job(self, job_id: str, reason: str = "") -> JobState:
        return self._loop.run(self._client.cancel_job(job_id, reason))

    def retry_job(self, job_id: str) -> None:
        self._loop.run(self._client.retry_job(job_id))

    def pause_queue(self, queue: str) -> bool:
        return self._loop.run(self._client.pause_queue(queue))

    def resume_queue(self, queue: str) -> bool:
        return self._loop.run(self._client.resume_queue(queue))

    def list_queues(self) -> list[JobQueueInfo]:
        return self._loop.run(self._client.list_queues())

    def queue_status(self, queue: str) -> QueueStatus:
        return self._loop.run(self._client.queue_status(queue))

    def drain_queue(
        self, queue: str, *, wait: bool = False, timeout: float | None = None
    ) -> QueueStatus:
        return self._loop.run(self._client.drain_queue(queue, wait=wait, timeout=timeout))

    # -- orchestrations ------------------------------------------------------------------------
    def start(
        self,
        orchestration: Callable[..., Any] | str,
        input: Any = None,
        *,
        instance_id: str | None = None,
        if_exists: ExistingInstancePolicy = ExistingInstancePolicy.FAIL,
        start_at: datetime | None = None,
        limit: Limit | None = None,
    ) -> SyncInstanceHandle[Any]:
        """:meth:`Client.start`; the handle is the instance id (a ``str``, as before)."""
        handle = self._loop.run(
            self._client.start(
                orchestration,
                input,
                instance_id=instance_id,
                if_exists=if_exists,
                start_at=start_at,
                limit=limit,
            )
        )
        return SyncInstanceHandle(handle, self._loop)

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        self._loop.run(self._client.raise_event(instance_id, name, data))

    def cancel(self, instance_id: str, reason: str = "") -> None:
        self._loop.run(self._client.cancel(instance_id, reason))

    def get_status(self, instance_id: str) -> InstanceState | None:
        return self._loop.run(self._client.get_status(instance_id))

    def wait_for_completion(
        self, instance_id: str, *, timeout: float | timedelta | None = None
    ) -> Any:
        return self._loop.run(self._client.wait_for_completion(instance_id, timeout=timeout))
