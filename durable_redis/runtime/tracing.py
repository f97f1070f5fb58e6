"""OpenTelemetry traces of starts, turns and activities (the ``otel`` extra).

Active only when the application has set a tracer provider
(``opentelemetry.trace.set_tracer_provider``, the ``otel`` extra); otherwise every hook here is
a check or two and returns a shared no-op, and nothing of opentelemetry is imported unless the
application imported it, so tracing costs nothing when it is off.

The W3C trace context travels through Redis with the work (docs/operations.md, "Traces"):
``client.start`` puts its span's context in the start message (``trace``), core copies it into
the execution's ``OrchestrationStarted``, each turn's span is a child of it, and core stamps the
turn span's context on the ``ActivityScheduled`` / ``SubOrchestrationScheduled`` commands it
records and on the work items and child starts it sends. So one trace shows client → turn →
activity → child turn, whatever processes ran them. A replayed turn is one span (the replay adds
none); a replayed command keeps the context recorded with it.

Spans (kind, attributes prefixed ``durable_redis.``):

- ``start_orchestration {name}`` (PRODUCER, in the client): ``instance_id``, ``orchestration``;
- ``orchestration_turn {name}`` (CONSUMER, in the worker, lock to commit): ``instance_id``,
  ``orchestration``, ``execution_id``, ``worker_id``, ``delivery``, ``history_events``,
  ``resumed``, ``status``, ``new_events``, ``activities_scheduled``; ERROR when the turn fails
  the instance or crashes;
- ``activity {name}`` (CONSUMER, in the worker running it; current while the function runs, so
  the function's own spans nest under it): ``instance_id``, ``activity``, ``activity_id``,
  ``attempt``, ``delivery``, ``session_id``, ``worker_id``, ``outcome``; ERROR when it raises.
"""

from __future__ import annotations

import contextvars
import os
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from durable_redis import core
from durable_redis.core import events as ev

if TYPE_CHECKING:
    from opentelemetry import context as _otel_context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _otel_trace
else:  # bound on first use (_tracer): nothing of opentelemetry is imported here
    _otel_context = _propagate = _otel_trace = None

__all__ = [
    "ActivitySpan",
    "activity_span",
    "begin_turn",
    "client_start_span",
    "enabled",
    "end_turn",
    "start_of",
    "turn_span",
]

_PREFIX = "durable_redis."
_MAX_CARRIER_ITEMS = 8
_MAX_CARRIER_VALUE = 1024
_cached: tuple[Any, Any] | None = None  # (provider, tracer)
_UNKNOWN = object()
_env_provider = False  # OTEL_PYTHON_TRACER_PROVIDER was set when opentelemetry was first seen
_no_op: tuple[type, ...] = ()
_own_get: Any = None  # opentelemetry.trace.get_tracer_provider as first seen


def _tracer() -> Any | None:
    """The library's tracer, or None when tracing is off.

    Off unless the application imported ``opentelemetry.trace`` (setting a provider needs it;
    so this module imports nothing of opentelemetry until then, and an untraced process pays
    one dict lookup) and set a tracer provider."""
    global _cached, _otel_context, _propagate, _otel_trace, _env_provider, _no_op, _own_get
    if _otel_trace is None:
        if "opentelemetry.trace" not in sys.modules:
            return None
        from opentelemetry import context, propagate, trace

        _otel_context, _propagate, _otel_trace = context, propagate, trace
        _env_provider = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
        _no_op = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        _own_get = trace.get_tracer_provider
    # Off at once while no provider is set: get_tracer_provider() would read the environment
    # on every call until one is (~10 µs, several times a chain step); its variable is read
    # once, above. A get_tracer_provider that is not opentelemetry's own still decides.
    if (
        getattr(_otel_trace, "_TRACER_PROVIDER", _UNKNOWN) is None
        and not _env_provider
        and _otel_trace.get_tracer_provider is _own_get
    ):
        return None
    provider = _otel_trace.get_tracer_provider()
    if isinstance(provider, _no_op):
        return None
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    from durable_redis._version import __version__

    tracer = provider.get_tracer("durable_redis", __version__)
    _cached = (provider, tracer)
    return tracer


def enabled() -> bool:
    """Whether spans are recorded now (otel importable and a tracer provider set)."""
    return _tracer() is not None


def _carrier_of(span: Any) -> dict[str, str] | None:
    carrier: dict[str, str] = {}
    _propagate.inject(carrier, context=_otel_trace.set_span_in_context(span))
    return carrier or None


def _parent(carrier: object) -> Any:
    """The context a carrier read from Redis names; an empty one (a new trace) when it is
    missing or malformed (a stored record is never trusted to be well-formed)."""
    empty = _otel_context.Context()
    if not isinstance(carrier, dict) or not 0 < len(carrier) <= _MAX_CARRIER_ITEMS:
        return empty
    for key, value in carrier.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return empty
        if len(value) > _MAX_CARRIER_VALUE:
            return empty
    return _propagate.extract(carrier, context=empty)


def _attrs(**values: Any) -> dict[str, Any]:
    return {_PREFIX + k: v for k, v in values.items() if v is not None}


# -- client ----------------------------------------------------------------------------------
class _ClientStart:
    """``with client_start_span(...) as trace:`` the carrier for the start message (or None)."""

    __slots__ = ("_name", "_scope", "_tracer", "instance_id", "span")

    def __init__(self, tracer: Any, name: str, instance_id: str) -> None:
        self._tracer = tracer
        self._name = name
        self.instance_id = instance_id
        self._scope: Any = None
        self.span: Any = None

    def __enter__(self) -> dict[str, str] | None:
        self._scope = self._tracer.start_as_current_span(
            f"start_orchestration {self._name}",
            kind=_otel_trace.SpanKind.PRODUCER,
            attributes=_attrs(instance_id=self.instance_id, orchestration=self._name),
        )
        self.span = self._scope.__enter__()
        return _carrier_of(self.span)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        result: bool | None = self._scope.__exit__(exc_type, exc, tb)
        return result


class _NoCarrier:
    __slots__ = ()

    def __enter__(self) -> dict[str, str] | None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_CARRIER = _NoCarrier()


def client_start_span(name: str, instance_id: str) -> _ClientStart | _NoCarrier:
    """The client's span around one ``start``; entering it gives the carrier to send."""
    tracer = _tracer()
    if tracer is None:
        return _NO_CARRIER
    return _ClientStart(tracer, name, instance_id)


# -- orchestration turns ---------------------------------------------------------------------
class _Turn:
    __slots__ = ("attempt", "carrier", "instance_id", "span", "start_ns", "worker_id")

    def __init__(self, instance_id: str, worker_id: str, attempt: int) -> None:
        self.instance_id = instance_id
        self.worker_id = worker_id
        self.attempt = attempt
        self.start_ns = time.time_ns()
        self.span: Any = None
        self.carrier: dict[str, str] | None = None


_current_turn: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar(
    "durable_redis_turn", default=None
)


class _TurnScope:
    """Around one lease's processing: the span begins once the turn knows its start
    (:func:`begin_turn`) and ends here, after the commit."""

    __slots__ = ("_token", "_turn")

    def __init__(self, turn: _Turn) -> None:
        self._turn = turn
        self._token: Any = None

    def __enter__(self) -> None:
        self._token = _current_turn.set(self._turn)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current_turn.reset(self._token)
        span = self._turn.span
        if span is None:
            return
        if exc is not None:
            crash = exc.__cause__ if exc.__cause__ is not None else exc
            span.record_exception(crash)
            span.set_status(_otel_trace.Status(_otel_trace.StatusCode.ERROR, str(crash)))
        span.end()


class _NoScope:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SCOPE = _NoScope()


def turn_span(instance_id: str, worker_id: str, attempt: int) -> _TurnScope | _NoScope:
    """Wraps the processing of one orchestration lease (fetch to commit)."""
    if _tracer() is None:
        return _NO_SCOPE
    return _TurnScope(_Turn(instance_id, worker_id, attempt))


def start_of(
    history: Sequence[Any], messages: Sequence[Any]
) -> ev.OrchestrationStarted | core.StartOrchestration | None:
    """What a turn starts from: a start message it takes (a new execution), else the history's
    ``OrchestrationStarted``."""
    for message in messages:
        if isinstance(message, core.StartOrchestration):
            return message
    if history and isinstance(history[0], ev.OrchestrationStarted):
        return history[0]
    return None


def begin_turn(
    start: ev.OrchestrationStarted | core.StartOrchestration | None,
    *,
    history_events: int,
    resumed: bool,
) -> dict[str, str] | None:
    """Open the current lease's turn span as a child of ``start``'s trace context; return the
    span's context for core to stamp on what the turn schedules (None when not tracing). A
    second call in one lease (a resume that fell back to a replay) keeps the one span."""
    turn = _current_turn.get()
    if turn is None:
        return None
    if turn.span is not None:
        turn.span.set_attribute(_PREFIX + "resumed", resumed)
        return turn.carrier
    tracer = _tracer()
    if tracer is None:
        return None
    name = start.name if start is not None else "unknown"
    turn.span = tracer.start_span(
        f"orchestration_turn {name}",
        context=_parent(start.trace if start is not None else None),
        kind=_otel_trace.SpanKind.CONSUMER,
        start_time=turn.start_ns,
        attributes=_attrs(
            instance_id=turn.instance_id,
            orchestration=name,
            execution_id=start.execution_id if start is not None else None,
            worker_id=turn.worker_id,
            delivery=turn.attempt,
            history_events=history_events,
            resumed=resumed,
        ),
    )
    turn.carrier = _carrier_of(turn.span)
    return turn.carrier


def end_turn(result: Any) -> None:
    """Record what the turn decided (``core.TurnResult``) on the current turn span."""
    turn = _current_turn.get()
    if turn is None or turn.span is None:
        return
    span = turn.span
    status = str(getattr(result.status, "value", result.status))
    span.set_attributes(
        _attrs(
            status=status,
            new_events=len(result.new_events),
            activities_scheduled=len(result.activities),
        )
    )
    if result.failure is not None and status == "failed":
        span.set_status(_otel_trace.Status(_otel_trace.StatusCode.ERROR, str(result.failure)))


# -- activities ------------------------------------------------------------------------------
class ActivitySpan:
    """The span of one activity execution, current while the function runs."""

    __slots__ = ("_scope", "_span", "_task", "_tracer", "_worker_id", "delivery")

    def __init__(self, tracer: Any, task: Any, delivery: int, worker_id: str) -> None:
        self._tracer = tracer
        self._task = task
        self.delivery = delivery
        self._worker_id = worker_id
        self._scope: Any = None
        self._span: Any = None

    def __enter__(self) -> ActivitySpan:
        task = self._task
        self._span = self._tracer.start_span(
            f"activity {task.name}",
            context=_parent(task.trace),
            kind=_otel_trace.SpanKind.CONSUMER,
            attributes=_attrs(
                instance_id=task.instance_id,
                activity=task.name,
                activity_id=task.activity_id,
                attempt=task.attempt,
                delivery=self.delivery,
                session_id=task.session_id,
                worker_id=self._worker_id,
            ),
        )
        self._scope = _otel_trace.use_span(self._span, end_on_exit=True)
        self._scope.__enter__()
        return self

    def outcome(self, outcome: tuple[bool, Any] | None) -> None:
        """``(True, value)`` completed, ``(False, exception)`` failed."""
        span = self._span
        if span is None or outcome is None:
            return
        ok, value = outcome
        span.set_attribute(_PREFIX + "outcome", "completed" if ok else "failed")
        if not ok and isinstance(value, BaseException):
            span.record_exception(value)
            span.set_status(
                _otel_trace.Status(_otel_trace.StatusCode.ERROR, f"{type(value).__name__}: {value}")
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and self._span is not None:
            # a cancellation (lease lost, shutdown) unwinds through here: not the code's error
            self._span.set_attribute(_PREFIX + "outcome", "cancelled")
        self._scope.__exit__(None, None, None)


class _NoActivitySpan:
    __slots__ = ()

    def __enter__(self) -> _NoActivitySpan:
        return self

    def outcome(self, outcome: tuple[bool, Any] | None) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_ACTIVITY_SPAN = _NoActivitySpan()


def activity_span(task: Any, *, delivery: int, worker_id: str) -> ActivitySpan | _NoActivitySpan:
    """``with activity_span(task, ...) as span: ...; span.outcome(outcome)``."""
    tracer = _tracer()
    if tracer is None:
        return _NO_ACTIVITY_SPAN
    return ActivitySpan(tracer, task, delivery, worker_id)
