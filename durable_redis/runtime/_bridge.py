"""The runtime's one place of contact with ``durable_redis.core``: typed glue and caches.

The turn contract itself (``durable_redis.contract``) needs no translation: core encodes a turn
as a ``TurnCommit`` (``core.to_commit``) and storage stores it. What remains here: running a
turn with tracing around it, the history and suspended-orchestration caches, and the activity
helpers (resolving, calling, building completions).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from durable_redis import core
from durable_redis.contract import FailureKind, TurnCommit
from durable_redis.core import to_commit
from durable_redis.errors import ConfigurationError, FailureDetails, NotRegisteredError
from durable_redis.runtime import tracing
from durable_redis.runtime._speed import NeedsThread
from durable_redis.storage.base import OrchestrationLease, QueuedMessage, Store

__all__ = [
    "HistoryCache",
    "ResolvedActivity",
    "SuspendedCache",
    "check_app",
    "completed_message",
    "decode_messages",
    "decode_task",
    "default_codec",
    "fail_instance",
    "failed_message",
    "has_start",
    "make_activity_context",
    "poison_completion",
    "resolve_activity",
    "run_turn",
    "to_commit",
]

Turn = tuple[core.TurnResult, core.SuspendedOrchestration | None]


@dataclass(frozen=True, slots=True)
class ResolvedActivity:
    fn: Callable[..., Any]  # user code: fn(ctx, input?) -> anything (awaitable if is_async)
    is_async: bool
    input_type: Any = None  # an annotation: any type form
    takes_input: bool = True
    inline: bool | None = None  # sync: @app.activity(inline=...), runtime/_speed.py


def check_app(app: object, given: str = "") -> None:
    """ConfigurationError unless ``app`` is an ``App`` (``given``: how it was named, if at all)."""
    if isinstance(app, core.App):
        return
    what = describe_object(app)
    named = f"{given!r} is {what}" if given else f"got {what}"
    hint = ""
    for kind in ("orchestration", "activity"):
        if getattr(app, f"__durable_{kind}__", None) is not None:
            hint = f" (an @app.{kind}; pass the App it is registered on)"
    raise ConfigurationError(f"a worker serves an App: {named}, not an App{hint}")


def describe_object(obj: object) -> str:
    if callable(obj) and hasattr(obj, "__qualname__"):
        kind = "a class" if isinstance(obj, type) else "the function"
        return f"{kind} {obj.__qualname__!r}"
    return f"a {type(obj).__qualname__} object"


def default_codec(app: core.App) -> core.Codec:
    return app.codec


# -- orchestrations ------------------------------------------------------------------------------
class HistoryCache:
    """Decoded history of recently run instances, so a turn decodes only the events it has not
    seen (decoding is ~3 us per event: 6 ms per turn at 2,000 events).

    Keyed by instance id; a cached event is reused only when its stored bytes are equal to the
    bytes at the same position now (decoding is a pure function of the bytes, and events are
    frozen), so a continued, re-created or rewritten history simply decodes again. Bounded by
    ``max_instances`` (least recently used dropped) and ``max_events`` per instance.
    """

    def __init__(self, max_instances: int = 512, max_events: int = 100_000) -> None:
        self._max_instances = max_instances
        self._max_events = max_events
        self._entries: dict[str, tuple[list[bytes], list[core.HistoryEvent]]] = {}

    def decode(self, instance_id: str, history: Sequence[bytes]) -> list[core.HistoryEvent]:
        cached = self._entries.pop(instance_id, None)
        events: list[core.HistoryEvent] = []
        if cached is not None:
            raw, decoded = cached
            n = min(len(raw), len(history))
            i = 0
            while i < n and (raw[i] is history[i] or raw[i] == history[i]):
                i += 1
            events = decoded[:i]
        events.extend(core.decode_history(history, len(events)))
        if len(history) <= self._max_events:
            if len(self._entries) >= self._max_instances:
                del self._entries[next(iter(self._entries))]  # least recently used
            self._entries[instance_id] = (list(history), events)
        return list(events)

    def forget(self, instance_id: str) -> None:
        self._entries.pop(instance_id, None)


def decode_messages(messages: Sequence[QueuedMessage]) -> list[core.Message]:
    return [core.decode_message(m.data) for m in messages]


def has_start(messages: Sequence[core.Message]) -> bool:
    """Whether decoded ``messages`` include a start (of any execution)."""
    return any(isinstance(m, core.StartOrchestration) for m in messages)


def run_turn(
    app: core.App,
    instance_id: str,
    history: Sequence[core.HistoryEvent],
    messages: Sequence[core.Message],
    now_ms: int,
    codec: core.Codec,
    local_runner: core.LocalRunner | None = None,
) -> Turn:
    """The turn, and the orchestration kept suspended when it is still running."""
    trace = tracing.begin_turn(
        tracing.start_of(history, messages), history_events=len(history), resumed=False
    )
    result, suspended = core.run_turn_suspending(
        app,
        instance_id,
        history,
        messages,
        now_ms=now_ms,
        codec=codec,
        trace=trace,
        local_runner=local_runner,
    )
    tracing.end_turn(result)
    return result, suspended


def advance(
    suspended: core.SuspendedOrchestration,
    messages: Sequence[core.Message],
    now_ms: int,
    local_runner: core.LocalRunner | None = None,
) -> Turn:
    """The next turn of a suspended orchestration: only ``messages`` run, no replay."""
    trace = tracing.begin_turn(
        suspended.started, history_events=suspended.history_len, resumed=True
    )
    result, after = suspended.advance(
        messages, now_ms=now_ms, trace=trace, local_runner=local_runner
    )
    tracing.end_turn(result)
    return result, after


@dataclass(slots=True)
class _Suspended:
    orchestration: core.SuspendedOrchestration
    execution_id: int
    events: list[bytes]  # the stored bytes of the history it ran (grown by each commit)


class SuspendedCache:
    """Orchestrations left suspended after a committed turn, so the next turn of the instance on
    this worker skips the replay (``core.SuspendedOrchestration.advance``).

    An entry is taken out (owned by one turn) and put back only after that turn committed. It is
    used only when the lease's history is the committed one: same execution and the same bytes
    in every stored event, compared with the bytes the entry's turns committed (one ``==`` of
    two lists, in C: a byte changed anywhere in the stored history, say a corrupted entry in its
    middle, is noticed); anything else closes it (full replay then, which reports an undecodable
    entry). Bounded by ``max_instances`` (least recently used closed) and ``max_events`` per
    instance.

    (The lock once left out a history the worker held, checking a SHA-1 digest of it in Redis
    instead: Redis spent ≈200 µs per turn of a chain of 100 on the digest, more than it saves
    by not sending the events, and a single-threaded Redis is the shared resource. Sending the
    history and comparing bytes here is cheaper on both sides: benchmarks/README.md.)
    """

    def __init__(self, max_instances: int = 256, max_events: int = 100_000) -> None:
        self._max_instances = max_instances
        self._max_events = max_events
        self._entries: dict[str, _Suspended] = {}
        # the history bytes of entries taken by a turn in progress (grown by its commit)
        self._taken: dict[str, tuple[int, list[bytes]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, lease: OrchestrationLease) -> core.SuspendedOrchestration | None:
        entry = self._entries.pop(lease.instance_id, None)
        if entry is None:
            return None
        history = lease.history
        if not isinstance(history, list):
            history = list(history)
        if lease.execution_id == entry.execution_id and history == entry.events:
            if len(self._taken) >= self._max_instances:
                self._taken.clear()  # turns that never came back (crashed): forget them
            self._taken[lease.instance_id] = (entry.execution_id, entry.events)
            return entry.orchestration
        entry.orchestration.close()
        return None

    def put(
        self,
        lease: OrchestrationLease,
        commit: TurnCommit,
        orchestration: core.SuspendedOrchestration,
    ) -> None:
        """Keep ``orchestration`` after ``commit`` of ``lease`` was stored (or close it)."""
        taken = self._taken.pop(lease.instance_id, None)
        history = lease.history
        before = commit.expected_history_len
        stored = before if commit.execution_id == lease.execution_id else 0
        events_len = before + len(commit.events)
        if (
            stored != before
            or before > len(history)
            or orchestration.execution_id != commit.execution_id
            or orchestration.history_len != events_len
            or events_len == 0
            or events_len > self._max_events
        ):
            orchestration.close()
            return
        if taken is not None and taken[0] == commit.execution_id and len(taken[1]) == before:
            events = taken[1]  # owned by this turn since take(): grow it
        else:
            events = list(history[:before])
        events.extend(commit.events)
        old = self._entries.pop(lease.instance_id, None)
        if old is not None:
            old.orchestration.close()
        while len(self._entries) >= self._max_instances:
            evicted = self._entries.pop(next(iter(self._entries)))  # least recently used
            evicted.orchestration.close()
        self._entries[lease.instance_id] = _Suspended(orchestration, commit.execution_id, events)

    def discard(self, instance_id: str) -> None:
        self._taken.pop(instance_id, None)
        entry = self._entries.pop(instance_id, None)
        if entry is not None:
            entry.orchestration.close()

    def clear(self) -> None:
        self._taken.clear()
        entries, self._entries = self._entries, {}
        for entry in entries.values():
            entry.orchestration.close()


def fail_instance(
    lease: OrchestrationLease,
    history: Sequence[core.HistoryEvent],
    details: FailureDetails,
    now_ms: int,
    *,
    corrupted: bool = False,
) -> TurnCommit:
    """The commit of a FAILED turn decided by the runtime (poison, undecodable history)."""
    result = core.fail_instance(
        list(history),
        details,
        now_ms=now_ms,
        instance_id=lease.instance_id,
        execution_id=lease.execution_id or 1,
    )
    commit = to_commit(result)
    if corrupted:
        # The stored events could not be decoded, so core saw none: append after what is stored.
        commit = dataclasses.replace(commit, expected_history_len=len(lease.history))
    return commit


# -- activities ----------------------------------------------------------------------------------
def decode_task(data: bytes) -> core.ActivityTask:
    return core.decode_task(data)


def resolve_activity(app: core.App, name: str) -> ResolvedActivity:
    """Raises NotRegisteredError for an unknown name."""
    definition = app.get_activity(name)
    return ResolvedActivity(
        fn=definition.fn,
        is_async=definition.is_async,
        input_type=definition.input_type,
        takes_input=definition.takes_input,
        inline=definition.inline,
    )


class _HasInput(Protocol):
    @property
    def input(self) -> bytes: ...


def activity_args(
    task: _HasInput, activity: ResolvedActivity, codec: core.Codec
) -> tuple[object, ...]:
    """The positional arguments after ``ctx``: the decoded input, if the function takes one."""
    if not activity.takes_input:
        return ()
    return (codec.decode(task.input, activity.input_type),)


def make_activity_context(
    task: core.ActivityTask,
    *,
    worker_id: str,
    delivery: int,
    session_id: str | None,
    cancel_event: threading.Event,
    stream: core.StreamWriter | None = None,
) -> core.ActivityContext:
    return core.ActivityContext(
        stream=stream,
        instance_id=task.instance_id,
        activity_id=task.activity_id,
        name=task.name,
        attempt=task.attempt,
        delivery=delivery,
        first_attempt_id=task.first_attempt_id,
        session_id=session_id,
        worker_id=worker_id,
        execution_id=task.execution_id,
        cancel_event=cancel_event,
    )


_in_local = threading.local()


def in_local_activity() -> bool:
    """True in a thread calling a local activity directly (a turn's; the test kit's crash
    faults tell local activities from dispatched ones by it)."""
    return bool(getattr(_in_local, "active", False))


def runs_inline(app: core.App, task: core.ActivityTask) -> bool:
    """Whether a local activity may run on the event loop: a sync one marked ``inline=True``
    with no timeout (an unknown name too: it only fails, at once)."""
    try:
        definition = app.get_activity(task.name)
    except NotRegisteredError:
        return True
    return definition.inline is True and not definition.is_async and task.timeout_ms is None


def local_runner(app: core.App, codec: core.Codec, worker_id: str) -> core.LocalRunner:
    """Runs a turn's local activities one by one, in the thread computing the turn: a sync
    function called there (in a helper thread when it has a timeout), an async one run to
    completion on its own event loop in a helper thread; a timed-out attempt fails with
    kind "timeout" (the helper thread is left to finish, its result dropped)."""

    def run(tasks: Sequence[core.ActivityTask]) -> list[core.Message]:
        return [_run_local(app, codec, worker_id, task) for task in tasks]

    return run


def _run_local(
    app: core.App, codec: core.Codec, worker_id: str, task: core.ActivityTask
) -> core.Message:
    try:
        activity = resolve_activity(app, task.name)
        args = activity_args(task, activity, codec)
        cancel = threading.Event()
        ctx = make_activity_context(
            task, worker_id=worker_id, delivery=1, session_id=None, cancel_event=cancel
        )
        if activity.is_async:
            call: Callable[[], object] = lambda: asyncio.run(activity.fn(ctx, *args))  # noqa: E731
        else:
            call = lambda: activity.fn(ctx, *args)  # noqa: E731
        if task.timeout_ms is None and not activity.is_async:
            _in_local.active = True
            try:
                value = call()
            finally:
                _in_local.active = False
        else:
            pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="local-activity")
            try:
                timeout = None if task.timeout_ms is None else task.timeout_ms / 1000
                value = pool.submit(call).result(timeout)
            except concurrent.futures.TimeoutError:
                cancel.set()  # ctx.is_cancelled() tells the abandoned attempt
                details = FailureDetails(
                    kind=FailureKind.TIMEOUT,
                    type_name="ActivityTimeoutError",
                    message=f"local activity {task.name!r} attempt timed out after "
                    f"{task.timeout_ms} ms",
                )
                return core.activity_failed(task, details)
            finally:
                pool.shutdown(wait=False)
        return core.activity_completed(task, value, codec)
    except Exception as exc:
        return core.activity_failed(task, exc)


def stream_writer(store: Store, instance_id: str, codec: core.Codec) -> core.StreamWriter:
    """The activity side of ``ctx.append_stream``: one XADD per item (at least once). Made
    on the event loop; a sync activity called inline (on that loop's thread) cannot wait for
    it there, so its ``append_stream`` raises ``NeedsThread`` (the call is re-run in the pool)."""
    loop_thread = threading.get_ident()

    async def append(item: object) -> str:
        return await store.append_stream(instance_id, codec.encode(item))

    def append_from_thread(item: object) -> str:
        if threading.get_ident() == loop_thread:
            raise NeedsThread("append_stream waits for the event loop: not from an inline call")
        offset: str = anyio.from_thread.run(append, item)
        return offset

    return core.StreamWriter(append, append_from_thread)


def completed_message(
    task: core.ActivityTask, value: object, codec: core.Codec
) -> tuple[str, bytes]:
    message = core.activity_completed(task, value, codec)
    return task.completion_message_id, core.encode_message(message)


def failed_message(
    task: core.ActivityTask, exc: BaseException, codec: core.Codec
) -> tuple[str, bytes]:
    message = core.activity_failed(task, exc)
    return task.completion_message_id, core.encode_message(message)


def poison_completion(
    task: core.ActivityTask, attempt: int, max_attempts: int, codec: core.Codec
) -> tuple[str, bytes]:
    details = FailureDetails(
        kind=FailureKind.POISON,
        type_name="PoisonMessageError",
        message=(
            f"activity {task.name!r} was started {attempt} times without completing "
            f"(max_attempts={max_attempts}); the worker running it probably crashed each time"
        ),
    )
    message = core.activity_failed(task, details)
    return task.completion_message_id, core.encode_message(message)
