"""Worker configuration: one frozen, validated dataclass.

The public API takes seconds (floats); the ``*_ms`` properties convert for the storage layer.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from durable_redis.core.jobs import validate_queue
from durable_redis.errors import ConfigurationError, InvalidIdError

__all__ = ["WorkerOptions", "new_worker_id"]


def new_worker_id() -> str:
    """A worker id unique per process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a :class:`~durable_redis.runtime.Worker` runs.

    Durations are in seconds.

    - ``orchestration_concurrency``: orchestration turns run at once (small turns inline on the
      event loop, those with more than 2,000 events in a thread, so a long replay never blocks
      the event loop).
    - ``activity_concurrency``: activities run at once; ``activity_threads`` bounds how many of
      them may be sync functions running in the thread pool.
    - ``batch_size``: most work items leased by one fetch.
    - ``job_concurrency``: jobs (``client.enqueue``) run at once; ``0`` = this worker runs no
      jobs. ``job_batch_size``: most jobs leased by one fetch (acks are batched too).
    - ``queues``: the queues this worker serves, for jobs and activity work items alike
      (``@app.activity(queue=)``, ``client.enqueue(..., queue=)``, ``ctx.call_activity(...,
      queue=)``, sessions opened for a queue); it never fetches work of another queue, and one
      blocking wait covers all of them. Default ``("default",)``. See docs/routing.md.
    - ``lock_timeout``: lease of an orchestration turn or an activity; a crashed worker's work is
      retried elsewhere after this. ``renewal_interval`` (default a third of it) renews leases
      of work still running.
    - ``max_attempts``: a message or work item fetched more often than this is poison: its
      orchestration fails (turns) or the activity fails with a ``"poison"`` failure.
    - ``session_lock_timeout``: lease of a session held by this worker (renewed while the worker
      lives); how long a crashed worker's sessions stay pinned to it.
    - ``session_idle_timeout``: release a session this long after its last activity finished;
      ``None`` keeps it while the worker lives.
    - ``max_sessions_per_worker``: sessions owned at once; at the limit the worker serves its
      own sessions and plain work and claims no new session. ``0`` = no session work at all.
    - ``shutdown_grace_period``: on stop, how long in-flight work may take before it is handed
      back.
    - ``unregistered_backoff`` / ``unregistered_backoff_max``: exponential back-off for work
      naming an orchestration or activity this worker does not know (it is never failed for
      that; another worker with a newer deployment may know it).
    - ``on_nondeterminism``: what to do with an instance whose history the code no longer
      matches (a changed orchestration deployed while it ran): ``"hold"`` (default) keeps its
      messages queued and retries its turn with back-off (``held_backoff`` doubling up to
      ``held_backoff_max``, not counted as attempts), marked held, until compatible code is
      deployed; ``"fail"`` fails it. ``@app.orchestration(on_nondeterminism=...)`` overrides
      it per orchestration (docs/deploying.md).
    - ``turn_timeout``: the turn watchdog (docs/reliability.md): a turn (replay plus new steps)
      running longer than this is interrupted (orchestration code that spins or blocks) and
      its instance held with a ``TurnTimeoutError`` reason, retried with the held back-off;
      the worker's other work goes on. Default 2 s (Temporal's deadlock detector); ``None``
      disables it. ``max_turn_crashes``: an instance whose turn was delivered this many times
      in a row without ever committing or being handed back (its code kills the worker:
      ``os._exit``, a segfault) is held with a ``TurnCrashedWorkerError`` reason and its code
      is not run again (``durable-redis held fail ID`` fails it); ``0`` disables it.
    - ``fetch_wait``: how long one fetch blocks on Redis waiting for work (it wakes at once when
      work arrives; this only bounds how quickly a stop is noticed by an idle fetch).
    - ``janitor_interval``: how often (with jitter) this worker removes terminal instances older
      than ``retention``; ``None`` disables the janitor.
    - ``local_handoff``: a turn's commit leases its new plain activities to this worker in
      the same call, and an activity's ack locks its instance for this worker when nobody holds
      it, so the next step runs here without a fetch (and without waking other workers); and
      (single-partition stores) the commit of a turn this worker fetched claims its next
      instance in the same call, so the next fetch needs no claim of its own.
      ``False``: everything goes through the queues.
    - ``worker_id``: default ``host:pid:random``.
    """

    orchestration_concurrency: int = 4
    activity_concurrency: int = 16
    activity_threads: int = 8
    batch_size: int = 16
    job_concurrency: int = 128
    job_batch_size: int = 128
    queues: tuple[str, ...] = ("default",)
    lock_timeout: float = 30.0
    renewal_interval: float | None = None
    max_attempts: int = 10
    session_lock_timeout: float = 60.0
    session_idle_timeout: float | None = None
    max_sessions_per_worker: int = 100
    shutdown_grace_period: float = 10.0
    unregistered_backoff: float = 1.0
    unregistered_backoff_max: float = 60.0
    on_nondeterminism: str = "hold"
    held_backoff: float = 1.0
    held_backoff_max: float = 60.0
    turn_timeout: float | None = 2.0
    max_turn_crashes: int = 3
    fetch_wait: float = 2.0
    janitor_interval: float | None = 300.0
    retention: float = 7 * 24 * 3600.0
    janitor_batch: int = 200
    local_handoff: bool = True
    worker_id: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.queues, str) or not self.queues:
            raise ConfigurationError(
                f"WorkerOptions.queues must be a non-empty sequence of names, got {self.queues!r}"
            )
        try:
            served = tuple(dict.fromkeys(validate_queue(q) for q in self.queues))
        except InvalidIdError as exc:
            raise ConfigurationError(f"WorkerOptions.queues: {exc}") from None
        object.__setattr__(self, "queues", served)  # a list (JSON) becomes a tuple
        positive_ints = {
            "orchestration_concurrency": self.orchestration_concurrency,
            "activity_concurrency": self.activity_concurrency,
            "activity_threads": self.activity_threads,
            "batch_size": self.batch_size,
            "job_batch_size": self.job_batch_size,
            "max_attempts": self.max_attempts,
            "janitor_batch": self.janitor_batch,
        }
        for name, value in positive_ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"WorkerOptions.{name} must be an int >= 1, got {value!r}")
        if (
            not isinstance(self.job_concurrency, int)
            or isinstance(self.job_concurrency, bool)
            or self.job_concurrency < 0
        ):
            raise ConfigurationError(
                f"WorkerOptions.job_concurrency must be an int >= 0, got {self.job_concurrency!r}"
            )
        if (
            not isinstance(self.max_sessions_per_worker, int)
            or isinstance(self.max_sessions_per_worker, bool)
            or self.max_sessions_per_worker < 0
        ):
            raise ConfigurationError(
                "WorkerOptions.max_sessions_per_worker must be an int >= 0, "
                f"got {self.max_sessions_per_worker!r}"
            )
        if (
            not isinstance(self.max_turn_crashes, int)
            or isinstance(self.max_turn_crashes, bool)
            or self.max_turn_crashes < 0
        ):
            raise ConfigurationError(
                f"WorkerOptions.max_turn_crashes must be an int >= 0, got {self.max_turn_crashes!r}"
            )
        positive: dict[str, float] = {
            "lock_timeout": self.lock_timeout,
            "session_lock_timeout": self.session_lock_timeout,
            "unregistered_backoff": self.unregistered_backoff,
            "unregistered_backoff_max": self.unregistered_backoff_max,
            "held_backoff": self.held_backoff,
            "held_backoff_max": self.held_backoff_max,
            "fetch_wait": self.fetch_wait,
            "retention": self.retention,
        }
        optional_positive: dict[str, float | None] = {
            "renewal_interval": self.renewal_interval,
            "session_idle_timeout": self.session_idle_timeout,
            "janitor_interval": self.janitor_interval,
            "turn_timeout": self.turn_timeout,
        }
        for name, seconds in positive.items():
            _check_seconds(name, seconds, allow_zero=False)
        for name, maybe in optional_positive.items():
            if maybe is not None:
                _check_seconds(name, maybe, allow_zero=name == "session_idle_timeout")
        _check_seconds("shutdown_grace_period", self.shutdown_grace_period, allow_zero=True)
        if self.lock_timeout < 0.2 or self.session_lock_timeout < 0.2:
            raise ConfigurationError("lock timeouts must be at least 0.2 seconds")
        if self.renewal_interval is not None and self.renewal_interval >= self.lock_timeout:
            raise ConfigurationError(
                f"renewal_interval ({self.renewal_interval}s) must be shorter than "
                f"lock_timeout ({self.lock_timeout}s)"
            )
        if self.unregistered_backoff_max < self.unregistered_backoff:
            raise ConfigurationError("unregistered_backoff_max must be >= unregistered_backoff")
        if self.held_backoff_max < self.held_backoff:
            raise ConfigurationError("held_backoff_max must be >= held_backoff")
        if self.on_nondeterminism not in ("hold", "fail"):
            raise ConfigurationError(
                "WorkerOptions.on_nondeterminism must be 'hold' or 'fail', "
                f"got {self.on_nondeterminism!r}"
            )
        if self.worker_id is not None and (
            not self.worker_id
            or len(self.worker_id) > 200
            or any(c in self.worker_id for c in "{}\n\0")
        ):
            raise ConfigurationError(f"invalid worker_id {self.worker_id!r}")

    # -- derived values, in the storage layer's units ----------------------------------------
    @property
    def lock_ms(self) -> int:
        return _ms(self.lock_timeout)

    @property
    def session_lock_ms(self) -> int:
        return _ms(self.session_lock_timeout)

    @property
    def fetch_wait_ms(self) -> int:
        return _ms(self.fetch_wait)

    @property
    def retention_ms(self) -> int:
        return _ms(self.retention)

    @property
    def effective_renewal_interval(self) -> float:
        """Seconds between lease renewals of running work (and of owned sessions)."""
        interval = (
            self.renewal_interval if self.renewal_interval is not None else self.lock_timeout / 3
        )
        return min(interval, self.session_lock_timeout / 3)

    def unregistered_delay_ms(self, attempt: int) -> int:
        """Back-off before retrying work whose name is not registered (attempt >= 1)."""
        return _backoff_ms(self.unregistered_backoff, self.unregistered_backoff_max, attempt)

    def held_delay_ms(self, attempt: int) -> int:
        """Back-off before retrying the turn of a held (nondeterministic) instance."""
        return _backoff_ms(self.held_backoff, self.held_backoff_max, attempt)


def _backoff_ms(base: float, cap: float, attempt: int) -> int:
    exponent = min(max(attempt - 1, 0), 16)
    return _ms(min(base * 2**exponent, cap))


def _check_seconds(name: str, value: float, *, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"WorkerOptions.{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:  # NaN check
        raise ConfigurationError(f"WorkerOptions.{name} must be > 0 seconds, got {value!r}")
