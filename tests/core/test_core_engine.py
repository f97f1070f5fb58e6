"""The replay engine end to end, driven by the in-memory runner or by hand-fed messages."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable_redis.core import (
    ActivityContext,
    App,
    MsgpackCodec,
    OrchestrationContext,
    OrchestrationStatus,
    RetryPolicy,
    TurnResult,
    activity_completed,
    activity_failed,
    fail_instance,
    run_turn,
)
from durable_redis.core import events as ev
from durable_redis.core import messages as msg
from durable_redis.errors import (
    ActivityFailedError,
    ActivityTimeoutError,
    ChildOrchestrationFailedError,
    FailureDetails,
    NotRegisteredError,
)
from durable_redis.testing import InMemoryRunner, replay_history
from tests.core.core_apps import (
    Order,
    Receipt,
    app,
    checkout,
    counter,
    parent,
    retrying,
    structured,
)

CODEC = MsgpackCodec()
T0 = 1_700_000_000_000


def start(name: str, value: Any = None, **kw: Any) -> msg.StartOrchestration:
    return msg.StartOrchestration(name=name, input=CODEC.encode(value), **kw)


class Driver:
    """Feeds hand-picked messages to run_turn, keeping the history like storage would."""

    def __init__(self, the_app: App, instance_id: str = "i") -> None:
        self.app = the_app
        self.instance_id = instance_id
        self.history: list[ev.HistoryEvent] = []
        self.now = T0
        self.last: TurnResult | None = None

    def turn(self, *messages: msg.Message, advance_ms: int = 1000) -> TurnResult:
        self.now += advance_ms
        result = run_turn(self.app, self.instance_id, self.history, list(messages), now_ms=self.now)
        if result.history_len_before == 0 and result.new_events:
            self.history = []
        assert len(self.history) == result.history_len_before
        self.history.extend(result.new_events)
        self.last = result
        return result

    def complete(self, task: msg.ActivityTask, value: Any) -> msg.ActivityCompleted:
        return activity_completed(task, value, CODEC)

    def timer_fired(self, result: TurnResult) -> list[msg.Message]:
        return [o.message for o in result.outgoing if isinstance(o.message, msg.TimerFired)]


def run(orchestration: Any, value: Any, **kw: Any) -> InMemoryRunner:
    runner = InMemoryRunner(app, **kw)
    runner.start(orchestration, value, instance_id="i")
    runner.run()
    return runner


def assert_replays_cleanly(runner: InMemoryRunner, instance_id: str = "i") -> None:
    inst = runner.instances[instance_id]
    for history in [*inst.executions, inst.history]:
        result = replay_history(runner.app, history)
        assert result.ok, result.nondeterminism
        assert result.events_replayed == len(history)


# -- happy paths --------------------------------------------------------------------------------
def test_checkout_completes_with_typed_result_and_replays() -> None:
    runner = InMemoryRunner(app)
    runner.start(checkout, Order("o1", ["a", "b"], 9.5), instance_id="i")
    runner.run(advance_clock=False)
    assert runner.instances["i"].status is OrchestrationStatus.RUNNING
    runner.raise_event("i", "approve", True)
    runner.run(advance_clock=False)
    receipt = runner.result("i")
    assert receipt == {"order_id": "o1", "charged": 9.5, "shipped": ["shipped:a", "shipped:b"]}
    inst = runner.instances["i"]
    assert CODEC.decode(inst.custom_status or b"") == {"approved": True}
    kinds = [type(e).__name__ for e in inst.history]
    assert kinds[:3] == ["OrchestrationStarted", "SessionOpened", "ActivityScheduled"]
    assert kinds[-2:] == ["SessionClosed", "OrchestrationCompleted"]
    assert [e.event_id for e in inst.history] == list(range(1, len(inst.history) + 1))
    assert_replays_cleanly(runner)


def test_typed_activity_result_decodes_dataclass() -> None:
    typed = App("typed")

    @typed.activity
    def make(ctx: ActivityContext, oid: str) -> Receipt:
        return Receipt(oid, 1.0, [])

    @typed.orchestration
    async def orch(ctx: OrchestrationContext, oid: str) -> str:
        receipt = await ctx.call_activity(make, oid)
        assert isinstance(receipt, Receipt)
        untyped = await ctx.call_activity("make", oid)
        assert isinstance(untyped, dict)
        return receipt.order_id

    runner = InMemoryRunner(typed)
    runner.start(orch, "x")
    runner.run()
    assert runner.result("i") == "x"


def test_timer_loses_to_event_and_when_any_returns_winner() -> None:
    runner = run(checkout, Order("o", [], 1.0))  # clock advances: the 1h timer wins
    inst = runner.instances["i"]
    assert inst.status is OrchestrationStatus.COMPLETED
    assert CODEC.decode(inst.custom_status or b"") == {"approved": False}
    fired = [e for e in inst.history if isinstance(e, ev.TimerFired)]
    created = [e for e in inst.history if isinstance(e, ev.TimerCreated)]
    assert fired[0].timer_id == created[0].event_id
    assert created[0].fire_at_ms == created[0].timestamp_ms + 3_600_000
    assert_replays_cleanly(runner)


def test_retry_backoff_timers_and_caught_failure() -> None:
    runner = run(retrying, 3)
    assert runner.result("i") == 3 * 100 + len("KeyError")
    history = runner.instances["i"].history
    scheduled = [e for e in history if isinstance(e, ev.ActivityScheduled) and e.name == "flaky"]
    assert [e.attempt for e in scheduled] == [1, 2, 3]
    timers = [e for e in history if isinstance(e, ev.TimerCreated)]
    assert [t.fire_at_ms - t.timestamp_ms for t in timers] == [2000, 4000]  # linear back-off
    failed = [e for e in history if isinstance(e, ev.ActivityFailed)]
    assert failed[-1].failure.type_name == "KeyError"
    assert "raise KeyError(message)" in failed[-1].failure.traceback
    assert_replays_cleanly(runner)


def test_retry_exhausted_and_non_retryable() -> None:
    local = App("r")
    calls: list[int] = []

    @local.activity
    def bad(ctx: ActivityContext, kind: str) -> None:
        calls.append(ctx.attempt)
        raise (TypeError if kind == "type" else ValueError)(kind)

    @local.orchestration
    async def orch(ctx: OrchestrationContext, kind: str) -> str:
        policy = RetryPolicy(max_attempts=3, initial_delay=0, non_retryable=(TypeError, "Other"))
        try:
            await ctx.call_activity(bad, kind, retry=policy)
        except ActivityFailedError as exc:
            return f"{exc.type_name}:{exc.details.message}"
        raise AssertionError("unreachable")

    for kind, expected_calls in (("type", [1]), ("value", [1, 2, 3])):
        calls.clear()
        runner = InMemoryRunner(local)
        runner.start(orch, kind)
        runner.run()
        assert calls == expected_calls
        assert runner.result("i").endswith(kind)
        assert not [e for e in runner.instances["i"].history if isinstance(e, ev.TimerCreated)]


def test_per_attempt_timeout_cancels_attempt_and_retries() -> None:
    local = App("t")

    @local.activity
    def slow(ctx: ActivityContext, x: int) -> int:
        return x

    @local.orchestration
    async def orch(ctx: OrchestrationContext, x: int) -> str:
        try:
            return str(await ctx.call_activity(slow, x, timeout=5, retry=RetryPolicy(2, 1)))
        except ActivityTimeoutError as exc:
            return exc.details.kind

    d = Driver(local)
    r1 = d.turn(start("orch", 7))
    (task1,) = r1.activities
    assert task1.timeout_ms == 5000
    r2 = d.turn(*d.timer_fired(r1))  # attempt 1 times out
    assert r2.cancelled_activities == (task1.activity_key,)
    r3 = d.turn(*d.timer_fired(r2))  # back-off over: attempt 2
    (task2,) = r3.activities
    assert task2.attempt == 2
    r4 = d.turn(d.complete(task1, 1), *d.timer_fired(r3))  # late completion of 1 is dropped
    assert r4.status is OrchestrationStatus.COMPLETED
    assert CODEC.decode(r4.output or b"") == "timeout"
    assert not any(isinstance(e, ev.ActivityCompleted) for e in r4.new_events)
    assert replay_history(local, d.history).ok

    d2 = Driver(local)
    r1 = d2.turn(start("orch", 8))
    r2 = d2.turn(d2.complete(r1.activities[0], 8))
    assert CODEC.decode(r2.output or b"") == "8"
    assert r2.cancelled_activities == ()


# -- asyncio inside orchestrations --------------------------------------------------------------
def test_taskgroup_timeout_and_wait_replay() -> None:
    runner = run(structured, ["x", "y"])
    out = runner.result("i")
    assert out[:3] == ["shipped:x", "shipped:y", "timed out"]
    assert out[3] == "1"
    history = runner.instances["i"].history
    assert any(isinstance(e, ev.TimerCreated) for e in history)  # asyncio.timeout is durable
    assert_replays_cleanly(runner)


def test_asyncio_timeout_cancels_activity_and_records_it() -> None:
    local = App("x")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> str:
        assert asyncio.current_task() is not None
        try:
            async with asyncio.timeout(10):
                await ctx.call_activity("remote", 1)
        except TimeoutError:
            return "timeout"
        return "done"

    d = Driver(local)
    r1 = d.turn(start("orch"))
    (timer,) = d.timer_fired(r1)
    assert isinstance(timer, msg.TimerFired)
    r2 = d.turn(timer)
    assert r2.status is OrchestrationStatus.COMPLETED
    assert CODEC.decode(r2.output or b"") == "timeout"
    assert any(isinstance(e, ev.ActivityCancelRequested) for e in r2.new_events)
    assert r2.cancelled_activities == (r1.activities[0].activity_key,)
    assert replay_history(local, d.history).ok


def test_asyncio_wait_for_and_wait_timeout_are_durable() -> None:
    local = App("w")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> list[str]:
        out = []
        try:
            await asyncio.wait_for(ctx.wait_for_event("e"), timeout=3)
        except TimeoutError:
            out.append("wait_for timeout")
        done, pending = await asyncio.wait([ctx.wait_for_event("f")], timeout=2)
        out.append(f"{len(done)}/{len(pending)}")
        out.append(str(await ctx.wait_for_event("e")))
        return out

    runner = InMemoryRunner(local)
    runner.start(orch)
    runner.run()
    runner.raise_event("i", "e", "hello")
    runner.run()
    assert runner.result("i") == ["wait_for timeout", "0/1", "hello"]
    assert replay_history(local, runner.instances["i"].history).ok


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("sleep", "asyncio.sleep()"),
        ("executor", "run_in_executor"),
        ("connect", "create_connection"),
        ("threadsafe", "call_soon_threadsafe"),
    ],
)
def test_real_io_is_a_clear_error(body: str, needle: str) -> None:
    local = App("io")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, kind: str) -> None:
        await asyncio.sleep(0)  # a bare yield is fine
        loop = asyncio.get_running_loop()
        if kind == "sleep":
            await asyncio.sleep(1)
        elif kind == "executor":
            await loop.run_in_executor(None, print)
        elif kind == "connect":
            await asyncio.open_connection("localhost", 1)
        else:
            loop.call_soon_threadsafe(print)

    d = Driver(local)
    result = d.turn(start("orch", body))
    assert result.status is OrchestrationStatus.FAILED
    assert result.failure is not None
    assert result.failure.type_name == "ForbiddenCallError"
    assert needle in result.failure.message


def test_gather_failure_leaves_siblings_cancelled_at_terminal() -> None:
    local = App("g")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> None:
        await asyncio.gather(ctx.call_activity("a"), ctx.call_activity("b"))

    d = Driver(local)
    r1 = d.turn(start("orch"))
    a, b = r1.activities
    r2 = d.turn(activity_failed(a, RuntimeError("boom")))
    assert r2.status is OrchestrationStatus.FAILED
    assert r2.failure is not None and r2.failure.type_name == "ActivityFailedError"
    assert r2.cancelled_activities == (b.activity_key,)


# -- failures, cancellation, poison -------------------------------------------------------------
def test_poison_is_not_catchable() -> None:
    local = App("p")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> str:
        try:
            await ctx.call_activity("x")
        except Exception:
            return "caught"
        return "no"

    d = Driver(local)
    r1 = d.turn(start("orch"))
    poison = FailureDetails("poison", "PoisonMessageError", "crashed 10 times")
    r2 = d.turn(activity_failed(r1.activities[0], poison))
    assert r2.status is OrchestrationStatus.FAILED
    assert r2.failure == poison
    assert replay_history(local, d.history).ok


def test_cancel_request_cancels_activities_children_and_sessions() -> None:
    local = App("c")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> None:
        s = await ctx.open_session_with_id("sess")
        await asyncio.gather(
            ctx.call_activity("a", session=s),
            ctx.call_sub_orchestration("child", 1),
        )

    d = Driver(local, "p")
    r1 = d.turn(start("orch"))
    assert r1.sessions_opened == ("sess",)
    (child_start,) = r1.outgoing
    assert child_start.instance_id == "p:sub:4"
    assert child_start.create is not None and child_start.create.parent_instance_id == "p"
    r2 = d.turn(msg.CancelRequested(reason="user"), msg.CancelRequested(reason="again"))
    assert r2.status is OrchestrationStatus.CANCELLED
    assert r2.failure is not None and r2.failure.message == "user"
    assert r2.cancelled_activities == (r1.activities[0].activity_key,)
    assert r2.sessions_closed == ("sess",)
    cancels = [o for o in r2.outgoing if isinstance(o.message, msg.CancelRequested)]
    assert [o.instance_id for o in cancels] == ["p:sub:4"]
    # a finished instance ignores everything
    r3 = d.turn(d.complete(r1.activities[0], 1), start("orch"))
    assert r3.new_events == () and r3.status is OrchestrationStatus.CANCELLED


def test_user_exception_fails_orchestration_with_details() -> None:
    local = App("e")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> None:
        raise ValueError("bad input")

    result = Driver(local).turn(start("orch"))
    assert result.status is OrchestrationStatus.FAILED
    assert result.failure is not None
    assert (result.failure.kind, result.failure.type_name) == ("application", "ValueError")
    assert "bad input" in result.failure.traceback


# -- sub-orchestrations and continue-as-new ------------------------------------------------------
def test_parent_with_children_and_detached() -> None:
    runner = run(parent, 2)
    assert runner.result("i") == [100 + 8, 200 + 8]
    assert set(runner.instances) == {"i", "i:sub:2", "i:sub:3", "i-detached"}
    assert runner.instances["i-detached"].status is OrchestrationStatus.COMPLETED
    for iid in runner.instances:
        assert_replays_cleanly(runner, iid)


def test_child_failure_is_catchable() -> None:
    local = App("cf")

    @local.orchestration
    async def child(ctx: OrchestrationContext, _: None) -> None:
        raise RuntimeError("child broke")

    @local.orchestration
    async def top(ctx: OrchestrationContext, _: None) -> str:
        try:
            await ctx.call_sub_orchestration(child, None, instance_id="kid")
        except ChildOrchestrationFailedError as exc:
            return exc.type_name
        return "no"

    runner = InMemoryRunner(local)
    runner.start(top)
    runner.run()
    assert runner.result("i") == "RuntimeError"


def test_continue_as_new_keeps_sessions_in_every_later_execution() -> None:
    runner = run(counter, 3)
    inst = runner.instances["i"]
    assert runner.result("i") == 1
    assert len(inst.executions) == 3
    starts = [h[0] for h in [*inst.executions, inst.history]]
    assert all(isinstance(s, ev.OrchestrationStarted) for s in starts)
    assert [s.execution_id for s in starts] == [1, 2, 3, 4]  # type: ignore[union-attr]
    assert [s.sessions for s in starts] == [(), ("s",), ("s",), ("s",)]  # type: ignore[union-attr]
    can_turns = [t for t in inst.turns if t.status is OrchestrationStatus.CONTINUED_AS_NEW]
    assert all(t.sessions_closed == () for t in can_turns)
    assert inst.turns[-1].sessions_closed == ("s",)
    first_turn_of_next = [t for t in inst.turns if t.history_len_before == 0]
    assert [t.execution_id for t in first_turn_of_next] == [1, 2, 3, 4]
    assert [t.sessions_opened for t in first_turn_of_next] == [("s",), (), (), ()]
    assert_replays_cleanly(runner)


def test_stale_execution_completion_dropped_after_continue_as_new() -> None:
    local = App("s")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, n: int) -> int:
        if n:
            ctx.call_activity("bg")  # left in flight
            ctx.continue_as_new(n - 1)
        result: int = await ctx.call_activity("fg")
        return result

    d = Driver(local)
    r1 = d.turn(start("orch", 1))
    assert r1.status is OrchestrationStatus.CONTINUED_AS_NEW
    assert r1.activities == () and r1.cancelled_activities == ("1:2",)
    (cont,) = r1.outgoing
    assert isinstance(cont.message, msg.StartOrchestration) and cont.message.execution_id == 2
    stale = msg.ActivityCompleted(execution_id=1, activity_id=2, result=CODEC.encode(0))
    r2 = d.turn(stale, cont.message)
    assert (r2.execution_id, r2.history_len_before) == (2, 0)
    assert r2.name == "orch" and r2.input == CODEC.encode(0)
    (fg,) = r2.activities
    r3 = d.turn(stale, d.complete(fg, 5), d.complete(fg, 6))
    assert CODEC.decode(r3.output or b"") == 5
    assert sum(isinstance(e, ev.ActivityCompleted) for e in r3.new_events) == 1


# -- sessions -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "type_name"),
    [
        ("unopened", "SessionNotOpenError"),
        ("empty", "InvalidIdError"),
        ("long", "InvalidIdError"),
        ("too_many", "TooManySessionsError"),
    ],
)
def test_session_misuse_fails_with_configuration_error(case: str, type_name: str) -> None:
    local = App("sess", max_sessions_per_orchestration=2)

    @local.orchestration
    async def orch(ctx: OrchestrationContext, case: str) -> None:
        try:
            if case == "unopened":
                await ctx.call_activity("a", session="nope")
            elif case == "empty":
                await ctx.open_session_with_id("")
            elif case == "long":
                await ctx.open_session_with_id("x" * 300)
            else:
                for _ in range(3):
                    await ctx.open_session()
        except Exception:  # a user's except cannot swallow it
            pass

    d = Driver(local)
    result = d.turn(start("orch", case))
    assert result.status is OrchestrationStatus.FAILED
    assert result.failure is not None
    assert (result.failure.kind, result.failure.type_name) == ("configuration", type_name)
    assert replay_history(local, d.history).ok


def test_session_open_close_idempotent_and_inflight_cancelled() -> None:
    local = App("s2")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> str:
        s = await ctx.open_session_with_id("a")
        assert await ctx.open_session_with_id("a") == "a"
        assert ctx.open_sessions == {"a"}
        work = ctx.call_activity("w", session=s)
        await ctx.close_session(s)
        await ctx.close_session(s)
        await ctx.close_session("unknown")
        try:
            await work
        except ActivityFailedError as exc:
            return exc.type_name
        return "no"

    d = Driver(local)
    result = d.turn(start("orch"))
    assert CODEC.decode(result.output or b"") == "SessionClosedError"
    kinds = [type(e).__name__ for e in result.new_events]
    assert kinds.count("SessionOpened") == 1 and kinds.count("SessionClosed") == 1
    assert result.sessions_opened == ("a",) and result.sessions_closed == ("a",)
    assert result.cancelled_activities == ("1:3",)
    assert result.activities == ()
    assert replay_history(local, d.history).ok


def test_run_turn_max_sessions_override() -> None:
    local = App("s3")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> int:
        await ctx.open_session()
        return ctx.max_sessions_per_orchestration

    r = run_turn(local, "i", [], [start("orch")], now_ms=T0, max_sessions_per_orchestration=0)
    assert r.failure is not None and r.failure.type_name == "TooManySessionsError"


# -- deterministic helpers ----------------------------------------------------------------------
def test_now_uuid_random_are_replay_stable_and_logger_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    local = App("h")
    seen: list[tuple[Any, ...]] = []

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> None:
        ctx.logger.info("step one")
        seen.append((ctx.now(), ctx.new_uuid(), ctx.random(), ctx.is_replaying))
        await ctx.wait_for_event("go")
        seen.append((ctx.now(), ctx.new_uuid(), ctx.random(), ctx.is_replaying))
        ctx.logger.info("step two")

    d = Driver(local)
    with caplog.at_level(logging.INFO, logger="durable_redis.orchestration"):
        d.turn(start("orch"))
        d.turn(msg.EventRaised(name="go", data=b""), advance_ms=5000)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["step one", "step two"]  # step one not logged again on replay
    first, replayed, second = seen
    assert first[:3] == replayed[:3] and replayed[3] is True and first[3] is False
    assert second[0] == datetime.fromtimestamp((T0 + 6000) / 1000, tz=UTC)
    assert second[1] != first[1] and second[1].version == 4


def test_events_are_buffered_until_waited_for() -> None:
    local = App("ev")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> list[Any]:
        await ctx.sleep(timedelta(seconds=1))
        first = await ctx.wait_for_event("x", int)
        second = await ctx.wait_for_event("x")
        return [first, second]

    d = Driver(local)
    r1 = d.turn(start("orch"))
    d.turn(
        msg.EventRaised(name="x", data=CODEC.encode(1)),
        msg.EventRaised(name="x", data=CODEC.encode(2)),
    )
    r3 = d.turn(*d.timer_fired(r1))
    assert CODEC.decode(r3.output or b"") == [1, 2]


def test_create_timer_needs_aware_datetime_and_when_any_needs_input() -> None:
    local = App("tm")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, kind: str) -> str:
        if kind == "naive":
            ctx.create_timer(datetime(2030, 1, 1))
        if kind == "empty":
            await ctx.when_any([])
        await ctx.create_timer(ctx.now() + timedelta(seconds=3))
        return "ok"

    for kind in ("naive", "empty"):
        r = Driver(local).turn(start("orch", kind))
        assert r.failure is not None and r.failure.type_name == "ValueError"
    d = Driver(local)
    r1 = d.turn(start("orch", "ok"))
    (out,) = r1.outgoing
    assert out.visible_at_ms == d.now + 3000 and out.instance_id == "i"
    assert CODEC.decode(d.turn(*d.timer_fired(r1)).output or b"") == "ok"


# -- message intake -----------------------------------------------------------------------------
def test_unknown_duplicate_and_stale_messages_are_dropped() -> None:
    local = App("d")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> int:
        result: int = await ctx.call_activity("a")
        return result

    d = Driver(local)
    assert d.turn().status is OrchestrationStatus.PENDING  # nothing before a start
    r1 = d.turn(start("orch"), start("orch"))
    assert len(r1.new_events) == 2
    (task,) = r1.activities
    junk = [
        msg.ActivityCompleted(execution_id=1, activity_id=99, result=b""),
        msg.ActivityCompleted(execution_id=7, activity_id=task.activity_id, result=b""),
        msg.TimerFired(execution_id=1, timer_id=2, fire_at_ms=0),
        msg.SubOrchestrationCompleted(execution_id=1, scheduled_id=2, output=b""),
        msg.SubOrchestrationFailed(
            execution_id=1, scheduled_id=2, failure=FailureDetails("a", "b", "c")
        ),
        msg.ActivityFailed(execution_id=1, activity_id=5, failure=FailureDetails("a", "b", "c")),
    ]
    assert d.turn(*junk).new_events == ()  # type: ignore[arg-type]
    r3 = d.turn(d.complete(task, 4), d.complete(task, 5))
    assert CODEC.decode(r3.output or b"") == 4


def test_not_registered_raises_for_runtime_backoff() -> None:
    with pytest.raises(NotRegisteredError):
        run_turn(App("empty"), "i", [], [start("ghost")], now_ms=T0)


def test_fail_instance_lists_work_and_notifies_parent() -> None:
    local = App("f")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> None:
        await ctx.open_session_with_id("s")
        await asyncio.gather(
            ctx.call_activity("a"), ctx.call_sub_orchestration("c", 1, instance_id="k")
        )

    d = Driver(local, "child")
    d.turn(start("orch", parent_instance_id="top", parent_execution_id=3, parent_event_id=9))
    details = FailureDetails("poison", "TurnPoison", "turn crashed")
    r = fail_instance(d.history, details, now_ms=T0)
    assert r.status is OrchestrationStatus.FAILED and r.failure == details
    assert r.history_len_before == len(d.history)
    assert r.cancelled_activities == ("1:3",)
    assert r.sessions_closed == ("s",)
    targets = {o.instance_id: o.message for o in r.outgoing}
    assert isinstance(targets["k"], msg.CancelRequested)
    to_parent = targets["top"]
    assert isinstance(to_parent, msg.SubOrchestrationFailed)
    assert (to_parent.execution_id, to_parent.scheduled_id) == (3, 9)
    d.history.extend(r.new_events)
    assert fail_instance(d.history, details, now_ms=T0).new_events == ()


def test_corrupted_history_fails() -> None:
    local = App("x")

    @local.orchestration
    async def orch(ctx: OrchestrationContext, _: None) -> None:
        pass

    bogus = [ev.TimerCreated(event_id=1, timestamp_ms=0, fire_at_ms=0)]
    r = run_turn(local, "i", bogus, [], now_ms=T0)
    assert r.status is OrchestrationStatus.FAILED
    assert r.failure is not None and r.failure.type_name == "CorruptedHistory"


def test_run_turn_inside_a_running_event_loop_restores_it() -> None:
    async def outer() -> TurnResult:
        loop = asyncio.get_running_loop()
        result = run_turn(app, "i", [], [start("retrying", 1)], now_ms=T0)
        assert asyncio.get_running_loop() is loop
        return result

    result = asyncio.run(outer())
    assert result.status is OrchestrationStatus.RUNNING and len(result.activities) == 1
