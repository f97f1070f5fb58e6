"""Codecs, event/message encoding, the registry, retry policies and the deterministic loop."""

from __future__ import annotations

import asyncio
import enum
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Optional, Union

import msgpack
import pydantic
import pytest

from durable_redis.core import (
    SCHEMA_VERSION,
    ActivityContext,
    ActivityTask,
    App,
    Backoff,
    JsonCodec,
    MsgpackCodec,
    OrchestrationContext,
    RetryPolicy,
    activity_completed,
    activity_failed,
    activity_metadata,
    cancel_message,
    decode_event,
    decode_failure,
    decode_message,
    decode_task,
    encode_event,
    encode_failure,
    encode_message,
    encode_task,
    event_raised_message,
    orchestration_metadata,
    start_message,
)
from durable_redis.core import events as ev
from durable_redis.core import messages as msg
from durable_redis.core.codec import from_plain, to_plain
from durable_redis.core.events import describe_event
from durable_redis.core.loop import DeterministicLoop, ForbiddenCallError
from durable_redis.errors import (
    CodecError,
    ConfigurationError,
    FailureDetails,
    NotRegisteredError,
    RegistrationError,
)


class Color(enum.Enum):
    RED = "red"


@dataclass(frozen=True)
class Inner:
    n: int
    when: datetime


@dataclass
class Outer:
    name: str
    inner: Inner
    tags: list[str] = field(default_factory=list)
    opt: Inner | None = None
    pair: tuple[int, str] = (0, "")
    nums: tuple[int, ...] = ()
    color: Color = Color.RED
    mapping: dict[str, Inner] = field(default_factory=dict)
    uniq: frozenset[int] = frozenset()
    day: date = date(2020, 1, 1)
    span: timedelta = timedelta(0)
    ratio: float = 0.0


class Model(pydantic.BaseModel):
    x: int
    y: list[str]


WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# -- codecs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", [MsgpackCodec(), JsonCodec()], ids=["msgpack", "json"])
def test_dataclass_and_model_round_trip(codec: Any) -> None:
    value = Outer(
        "o",
        Inner(1, WHEN),
        ["a"],
        Inner(2, WHEN),
        (3, "x"),
        (1, 2),
        Color.RED,
        {"k": Inner(3, WHEN)},
        frozenset({2, 1}),
        date(2021, 2, 3),
        timedelta(seconds=5),
        2,
    )
    assert codec.decode(codec.encode(value), Outer) == value
    model = Model(x=1, y=["a"])
    assert codec.decode(codec.encode(model), Model) == model
    assert codec.decode(codec.encode([model]), list[Model]) == [model]
    assert codec.decode(codec.encode(None), Optional[Inner]) is None  # noqa: UP045
    assert codec.decode(codec.encode({"a": 1}), Any) == {"a": 1}
    assert codec.decode(codec.encode("lit"), Literal["lit"]) == "lit"
    assert codec.decode(codec.encode({1, 2}), set[int]) == {1, 2}
    assert codec.decode(codec.encode((1, 2)), tuple) == (1, 2)
    assert repr(codec).startswith(type(codec).__name__)


def test_union_decoding_and_errors() -> None:
    codec = MsgpackCodec()
    data = codec.encode(Inner(1, WHEN))
    assert codec.decode(data, Union[int, Inner]) == Inner(1, WHEN)  # noqa: UP007
    with pytest.raises(CodecError, match="no member of the union"):
        codec.decode(codec.encode("x"), Inner | Model)
    with pytest.raises(CodecError):
        codec.decode(codec.encode(5), list[int])
    with pytest.raises(CodecError):
        codec.decode(codec.encode(5), dict[str, int])
    with pytest.raises(CodecError):
        codec.decode(codec.encode(5), Inner)
    with pytest.raises(CodecError):
        codec.decode(codec.encode({"x": "no"}), Model)
    with pytest.raises(CodecError):
        codec.decode(codec.encode([1, 2, 3]), tuple[int, int])


def test_unencodable_and_bad_bytes() -> None:
    with pytest.raises(CodecError, match="object"):
        MsgpackCodec().encode(object())
    with pytest.raises(CodecError):
        MsgpackCodec().encode(2**70)
    with pytest.raises(CodecError):
        JsonCodec().encode(b"bytes")
    with pytest.raises(CodecError):
        JsonCodec().encode(float("nan"))
    with pytest.raises(CodecError):
        MsgpackCodec().decode(b"\xc1")
    with pytest.raises(CodecError):
        JsonCodec().decode(b"\xff{")


def test_transform_hook_applies_both_ways() -> None:
    class Xor:
        def encode(self, data: bytes) -> bytes:
            return bytes(b ^ 0x5A for b in data)

        def decode(self, data: bytes) -> bytes:
            return self.encode(data)

    codec = MsgpackCodec(transform=Xor())
    data = codec.encode({"secret": 1})
    assert b"secret" not in data
    assert codec.decode(data) == {"secret": 1}
    assert MsgpackCodec().encode({"secret": 1}) != data


def test_plain_helpers() -> None:
    assert to_plain({1: {2}}) == {1: [2]}
    assert from_plain([1, 2], list) == [1, 2]
    assert from_plain({"a": 1}, dict) == {"a": 1}
    assert from_plain("x", "Unresolved") == "x"


# -- events, messages, tasks ----------------------------------------------------------------------
FAIL = FailureDetails("application", "ValueError", "bad", "tb")
ALL_EVENTS: list[ev.HistoryEvent] = [
    ev.OrchestrationStarted(
        event_id=1,
        timestamp_ms=2,
        instance_id="i",
        name="n",
        version="v",
        input=b"x",
        sessions=("a", "b"),
        parent_instance_id="p",
        parent_execution_id=1,
        parent_event_id=3,
    ),
    ev.OrchestrationCompleted(event_id=2, timestamp_ms=2, output=b"o"),
    ev.OrchestrationFailed(event_id=3, timestamp_ms=2, failure=FAIL),
    ev.OrchestrationContinuedAsNew(event_id=4, timestamp_ms=2, input=b"i", version="2"),
    ev.OrchestrationCancelRequested(event_id=5, timestamp_ms=2, reason="r"),
    ev.ActivityScheduled(event_id=6, timestamp_ms=2, name="a", input=b"i", session_id="s"),
    ev.ActivityCompleted(event_id=7, timestamp_ms=2, activity_id=6, result=b"r"),
    ev.ActivityFailed(event_id=8, timestamp_ms=2, activity_id=6, failure=FAIL),
    ev.ActivityCancelRequested(event_id=9, timestamp_ms=2, activity_id=6, reason="x"),
    ev.TimerCreated(event_id=10, timestamp_ms=2, fire_at_ms=5),
    ev.TimerFired(event_id=11, timestamp_ms=2, timer_id=10, fire_at_ms=5),
    ev.EventSubscribed(event_id=12, timestamp_ms=2, name="e"),
    ev.EventRaised(event_id=13, timestamp_ms=2, name="e", data=b"d"),
    ev.SubOrchestrationScheduled(
        event_id=14, timestamp_ms=2, name="c", version="", instance_id="k", input=b""
    ),
    ev.SubOrchestrationCompleted(event_id=15, timestamp_ms=2, scheduled_id=14, output=b"o"),
    ev.SubOrchestrationFailed(event_id=16, timestamp_ms=2, scheduled_id=14, failure=FAIL),
    ev.SubOrchestrationCancelRequested(event_id=17, timestamp_ms=2, scheduled_id=14),
    ev.DetachedOrchestrationStarted(
        event_id=18, timestamp_ms=2, name="d", version="", instance_id="z", input=b""
    ),
    ev.CustomStatusSet(event_id=19, timestamp_ms=2, status=None),
    ev.SessionOpened(event_id=20, timestamp_ms=2, session_id="s"),
    ev.SessionClosed(event_id=21, timestamp_ms=2, session_id="s"),
    ev.EventSent(event_id=22, timestamp_ms=2, instance_id="t", name="e", data=b"d"),
    ev.QueueEventRaised(event_id=23, timestamp_ms=2, queue="q", data=b"d"),
    ev.QueueDequeued(event_id=24, timestamp_ms=2, queue="q"),
    ev.ValueSet(event_id=25, timestamp_ms=2, key="k", value=b"v"),
    ev.UpdateReceived(event_id=26, timestamp_ms=2, update_id="u", name="n", input=b"i"),
    ev.UpdateCompleted(event_id=27, timestamp_ms=2, update_id="u", failure=FAIL),
    ev.StreamAppended(event_id=28, timestamp_ms=2, data=b"s"),
    ev.PatchMarker(event_id=29, timestamp_ms=2, change_id="c"),
    ev.ExecutionReset(event_id=30, timestamp_ms=2, from_execution=1, from_event=29, reason="r"),
    ev.OrchestrationStarted(
        event_id=1,
        timestamp_ms=2,
        instance_id="i",
        name="n",
        version="v",
        input=b"x",
        queue_names=("q",),
        queue_data=(b"d",),
        value_keys=("k",),
    ),
]


def test_every_event_kind_round_trips() -> None:
    kinds = {type(e) for e in ALL_EVENTS}
    assert kinds == set(ev.INPUT_EVENTS) | set(ev.COMMAND_EVENTS)
    for event in ALL_EVENTS:
        data = encode_event(event)
        assert msgpack.unpackb(data)["v"] == SCHEMA_VERSION
        assert decode_event(data) == event
        assert type(event).__name__ in describe_event(event)


def test_bad_event_bytes_are_codec_errors() -> None:
    cases = [
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"v": 99, "k": "TimerCreated"}),
        msgpack.packb({"k": "TimerCreated"}),
        msgpack.packb({"v": 1, "k": "Nope"}),
        msgpack.packb({"v": 1, "k": "TimerCreated", "event_id": 1}),  # missing fields
        msgpack.packb(
            {"v": 1, "k": "OrchestrationFailed", "event_id": 1, "timestamp_ms": 1, "failure": [1]}
        ),
    ]
    for data in cases:
        with pytest.raises(CodecError):
            decode_event(data)
    with pytest.raises(CodecError):
        encode_event(msg.CancelRequested())  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        encode_event(ev.TimerCreated(event_id=1, timestamp_ms=1, fire_at_ms=object()))  # type: ignore[arg-type]


def test_messages_tasks_failures_round_trip() -> None:
    task = ActivityTask(
        instance_id="i",
        execution_id=2,
        activity_id=7,
        name="a",
        input=b"x",
        session_id="s",
        attempt=3,
    )
    assert decode_task(encode_task(task)) == task
    assert task.activity_key == "2:7"
    assert task.idempotency_key == "i:2:7"
    assert task.completion_message_id == "i:2:7:done"
    codec = MsgpackCodec()
    done = activity_completed(task, {"v": 1}, codec)
    assert (done.execution_id, done.activity_id) == (2, 7)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        failed = activity_failed(task, exc)
    assert failed.failure.type_name == "ValueError" and "boom" in failed.failure.traceback
    assert activity_failed(task, FAIL).failure == FAIL
    for message in [
        done,
        failed,
        start_message(name="n"),
        start_message(name="n", input=b"1", version="v"),
        event_raised_message("e", b"d"),
        cancel_message("why"),
        msg.TimerFired(execution_id=1, timer_id=2, fire_at_ms=3),
        msg.SubOrchestrationCompleted(execution_id=1, scheduled_id=2, output=b""),
        msg.SubOrchestrationFailed(execution_id=1, scheduled_id=2, failure=FAIL),
        msg.StartOrchestration(name="n", input=b"", sessions=("a",), execution_id=3),
    ]:
        assert decode_message(encode_message(message)) == message
    assert decode_failure(encode_failure(FAIL)) == FAIL
    with pytest.raises(CodecError):
        decode_failure(b"junk")


# -- registry -------------------------------------------------------------------------------------
def test_registry_names_versions_and_errors() -> None:
    app = App("reg")

    @app.orchestration
    async def orch(ctx: OrchestrationContext, x: int) -> int:
        return x

    @app.orchestration(name="orch", version="2")
    async def orch_v2(ctx: OrchestrationContext) -> int:
        return 2

    @app.activity(name="act")
    async def my_act(ctx: ActivityContext, x: str) -> str:
        return x

    assert app.get_orchestration("orch").version == "2"  # latest
    assert app.get_orchestration("orch", "").fn is orch
    assert not app.get_orchestration("orch", "2").takes_input
    assert orchestration_metadata(orch).input_type is int
    definition = activity_metadata(my_act)
    assert (definition.name, definition.is_async, definition.result_type) == ("act", True, str)
    assert app.get_activity("act") is definition
    assert app.orchestration_names == ["orch"] and app.activity_names == ["act"]
    assert "orch" in repr(app)
    with pytest.raises(NotRegisteredError):
        app.get_orchestration("nope")
    with pytest.raises(NotRegisteredError):
        app.get_orchestration("orch", "3")
    with pytest.raises(NotRegisteredError):
        app.get_activity("nope")
    with pytest.raises(NotRegisteredError):
        orchestration_metadata(print)
    with pytest.raises(NotRegisteredError):
        activity_metadata(print)
    with pytest.raises(RegistrationError, match="already"):
        app.orchestration(name="orch")(orch)
    with pytest.raises(RegistrationError, match="already"):
        app.activity(name="act")(my_act)
    with pytest.raises(RegistrationError, match="async def"):
        app.orchestration(lambda ctx, x: x)
    with pytest.raises(RegistrationError, match="reserved"):
        app.activity(name="__durable_x")(my_act)
    with pytest.raises(RegistrationError, match="invalid"):
        app.activity(name="x" * 300)(my_act)
    with pytest.raises(RegistrationError, match="positional"):

        @app.activity
        def three(ctx: ActivityContext, a: int, b: int) -> None: ...

    with pytest.raises(ConfigurationError):
        App("bad", max_sessions_per_orchestration=-1)


def test_the_wrong_kind_of_function_is_named() -> None:
    app = App("kinds")

    @app.activity
    def send_email(ctx: ActivityContext, to: str) -> None: ...

    @app.orchestration
    async def flow(ctx: OrchestrationContext) -> None: ...

    with pytest.raises(
        NotRegisteredError,
        match=r"send_email is an activity \(@app.activity\), "
        r"not an orchestration: start an orchestration that calls it",
    ):
        orchestration_metadata(send_email)
    with pytest.raises(
        NotRegisteredError,
        match=r"flow is an orchestration .* not an activity: "
        r"run it with ctx.call_sub_orchestration",
    ):
        activity_metadata(flow)
    with pytest.raises(NotRegisteredError, match=r"print is not registered with @app\.activity"):
        activity_metadata(print)


def test_failure_details_name_the_causes_of_a_task_group() -> None:
    from durable_redis.errors import ActivityFailedError

    inner = FailureDetails("application", "KeyError", "'no such customer 7'", "Traceback: boom\n")
    try:
        try:
            raise ActivityFailedError(
                "activity 'lookup' failed: KeyError: 'no such customer 7'", inner
            )
        except ActivityFailedError as exc:
            raise ExceptionGroup(
                "unhandled errors in a TaskGroup", [exc, ValueError("two")]
            ) from None
    except ExceptionGroup as group:
        details = msg.failure_from_exception(group)
    assert details.type_name == "ExceptionGroup"
    assert details.message == (
        "unhandled errors in a TaskGroup (2 sub-exceptions): ActivityFailedError: activity "
        "'lookup' failed: KeyError: 'no such customer 7'; ValueError: two"
    )
    assert "The original error, KeyError: 'no such customer 7':\nTraceback: boom" in (
        details.traceback
    )  # fmt: skip


def test_describe_event_shows_msgpack_payloads_as_json() -> None:
    def scheduled(data: bytes) -> ev.ActivityScheduled:
        return ev.ActivityScheduled(event_id=3, timestamp_ms=0, name="ship", input=data)

    packed = msgpack.packb({"items": ["a"], "amount": 1}, use_bin_type=True)
    assert describe_event(scheduled(packed)) == (
        'ActivityScheduled(name=\'ship\', session_id=None, input={"amount": 1, "items": ["a"]})'
    )
    assert describe_event(scheduled(b'{"x":1}')).endswith('input={"x":1})')  # JSON codec
    assert describe_event(scheduled(b"\x00\xff")).endswith("input=00ff)")  # encrypted: hex
    long = describe_event(scheduled(msgpack.packb("y" * 500)))
    assert long.endswith("...)") and len(long) < 200


def test_unresolvable_hints_fall_back_to_any() -> None:
    app = App("hints")

    def act(ctx: ActivityContext, x: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        ...

    assert app.activity(act) is act
    assert activity_metadata(act).input_type is Any


def test_activity_context() -> None:
    event = threading.Event()
    ctx = ActivityContext(
        instance_id="i", execution_id=1, activity_id=4, name="a", cancel_event=event
    )
    assert ctx.idempotency_key == "i:1:4" and not ctx.is_cancelled
    ctx.cancel()
    assert ctx.is_cancelled and event.is_set()
    assert "i" in repr(ctx)


# -- retry ----------------------------------------------------------------------------------------
def test_retry_delays_and_validation() -> None:
    exp = RetryPolicy(initial_delay=timedelta(seconds=1), max_delay=5)
    assert [exp.delay_ms(a) for a in (1, 2, 3, 4)] == [1000, 2000, 4000, 5000]
    lin = RetryPolicy(initial_delay=0.5, backoff=Backoff.LINEAR)
    assert [lin.delay_ms(a) for a in (1, 2)] == [500, 1000]
    fixed = RetryPolicy(initial_delay=2, backoff="fixed", timeout=timedelta(seconds=3))  # type: ignore[arg-type]
    assert [fixed.delay_ms(a) for a in (1, 5)] == [2000, 2000]
    assert fixed.timeout_ms == 3000 and exp.timeout_ms is None
    policy = RetryPolicy(non_retryable=(KeyError, "mod.Custom"))
    assert not policy.is_retryable(FailureDetails("application", "KeyError", ""))
    assert not policy.is_retryable(FailureDetails("application", "pkg.mod.Custom", ""))
    assert policy.is_retryable(FailureDetails("application", "ValueError", ""))
    for bad in (
        {"max_attempts": 0},
        {"multiplier": 0.5},
        {"initial_delay": -1},
        {"timeout": 0},
        {"backoff": "weird"},
    ):
        with pytest.raises((ConfigurationError, ValueError)):
            RetryPolicy(**bad)


# -- the loop -------------------------------------------------------------------------------------
class _Host:
    def __init__(self) -> None:
        self.timers: list[asyncio.TimerHandle] = []
        self.cancelled: list[asyncio.TimerHandle] = []

    def loop_time(self) -> float:
        return 100.0

    def loop_timer(self, handle: asyncio.TimerHandle) -> None:
        self.timers.append(handle)

    def loop_timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self.cancelled.append(handle)


def test_loop_runs_fifo_and_forbids_io() -> None:
    host = _Host()
    loop = DeterministicLoop(host)  # type: ignore[abstract]
    order: list[int] = []
    loop.call_soon(order.append, 1)
    loop.call_soon(order.append, 2).cancel()
    loop.call_soon(order.append, 3)
    assert not loop.is_running()
    loop.run_until_idle()
    assert order == [1, 3]
    handle = loop.call_later(5, order.append, 4)
    assert host.timers == [handle] and handle.when() == 105.0
    handle.cancel()
    assert host.cancelled == [handle]
    loop.schedule_handle(loop.call_at(1, order.append, 5))
    loop.run_until_idle()
    assert order == [1, 3, 5]
    assert loop.get_task_factory() is None and loop.get_exception_handler() is None
    assert not loop.get_debug()
    loop.set_debug(True)
    loop.default_exception_handler({"message": "x"})
    assert loop.unhandled == [{"message": "x"}]
    for call in (
        lambda: loop.run_forever(),
        lambda: loop.sock_recv(None, 1),  # type: ignore[arg-type]
        lambda: loop.add_reader(0, print),
        lambda: loop.set_task_factory(None),
        lambda: loop.set_exception_handler(None),
        lambda: loop.subprocess_exec(print),  # type: ignore[arg-type]
    ):
        with pytest.raises(ForbiddenCallError, match="not allowed"):
            call()
    loop.halt()
    loop.call_soon(order.append, 6)
    loop.run_until_idle()
    assert order == [1, 3, 5] and loop.halted
    loop.close()
    assert loop.is_closed()
