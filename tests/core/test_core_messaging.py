"""Core of talking to running orchestrations: updates, key-value state, FIFO queues, events to
other instances, history limits (docs/messaging.md). Pure: turns fed by hand."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from durable_redis.core import App, OrchestrationContext, OrchestrationStatus, replay
from durable_redis.core import events as ev
from durable_redis.core import messages as msg
from durable_redis.errors import ConfigurationError, ValidationError
from durable_redis.testing import assert_replays, load_history
from tests.core.golden_json import write_golden
from tests.core.test_core_engine import CODEC, Driver, start

app = App("messaging")


@app.orchestration
async def cart(ctx: OrchestrationContext, items: list[str]) -> list[str]:
    def add(item: str) -> int:
        items.append(item)
        ctx.set_value("count", len(items))
        ctx.append_stream({"added": item})
        return len(items)

    def check(item: object) -> None:
        if not isinstance(item, str) or not item:
            raise ValueError("an item is a non-empty string")

    async def slow_add(item: str) -> int:
        await ctx.sleep(5)
        return add(item)

    ctx.set_update_handler("add", add, validator=check)
    ctx.set_update_handler("slow_add", slow_add)
    await ctx.wait_for_event("checkout")
    return items


@app.orchestration
async def consumer(ctx: OrchestrationContext, seen: list[Any]) -> list[Any]:
    while len(seen) < 4:
        seen.append(await ctx.dequeue_event("jobs"))
        if len(seen) == 2:
            ctx.continue_as_new(seen)
    return seen


@app.orchestration
async def sender(ctx: OrchestrationContext, target: str) -> None:
    ctx.raise_event(target, "ping", {"from": ctx.instance_id})


def update(uid: str, name: str, value: Any) -> msg.UpdateRequested:
    return msg.UpdateRequested(update_id=uid, name=name, input=CODEC.encode(value))


def replies(result: Any) -> dict[str, msg.UpdateReply]:
    return {uid: msg.decode_reply(data) for uid, data in result.update_replies}


def test_update_applies_once_and_answers() -> None:
    d = Driver(app)
    d.turn(start("cart", []))
    r = d.turn(update("u1", "add", "apple"), update("u1", "add", "apple"))
    answer = replies(r)["u1"]
    assert _decoded(answer.result) == 1 and answer.failure is None
    assert r.values == (("count", CODEC.encode(1)),)
    assert sum(isinstance(e, ev.UpdateReceived) for e in r.new_events) == 1
    # a retried update id later in the execution is dropped, not applied twice
    again = d.turn(update("u1", "add", "apple"))
    assert again.new_events == () and again.update_replies == ()


def test_validator_rejects_without_recording() -> None:
    d = Driver(app)
    d.turn(start("cart", []))
    r = d.turn(update("bad", "add", ""), update("none", "nope", 1))
    got = replies(r)
    assert got["bad"].failure is not None and got["bad"].failure.kind == "rejected"
    assert "non-empty" in got["bad"].failure.message
    assert got["none"].failure is not None and "no handler" in got["none"].failure.message
    assert r.new_events == ()


def test_async_update_handler_replies_when_it_finishes_and_replays() -> None:
    d = Driver(app)
    d.turn(start("cart", ["a"]))
    r = d.turn(update("s", "slow_add", "b"))
    assert r.update_replies == ()
    fired = d.timer_fired(r)
    r2 = d.turn(*fired)
    assert _decoded(replies(r2)["s"].result) == 2
    done = d.turn(msg.EventRaised(name="checkout", data=CODEC.encode(None)))
    assert done.status is OrchestrationStatus.COMPLETED
    assert replay(app, d.history).ok


def test_pending_update_fails_when_the_instance_ends() -> None:
    d = Driver(app)
    d.turn(start("cart", []))
    r = d.turn(
        update("s", "slow_add", "b"), msg.EventRaised(name="checkout", data=CODEC.encode(None))
    )
    assert r.status is OrchestrationStatus.COMPLETED
    failure = replies(r)["s"].failure
    assert failure is not None and failure.type_name == "InstanceEndedError"


@app.orchestration
async def batcher(ctx: OrchestrationContext, seen: list[Any]) -> list[Any]:
    if not seen:
        await ctx.wait_for_event("go")  # queue events arrive and wait, buffered in history
    seen.append(await ctx.dequeue_event("jobs"))
    if len(seen) < 4:
        ctx.continue_as_new(seen)
    return seen


def test_queue_is_fifo_exactly_once_across_continue_as_new() -> None:
    d = Driver(app)
    events = [msg.QueueEventRaised(queue="jobs", data=CODEC.encode(n)) for n in range(4)]
    go = msg.EventRaised(name="go", data=CODEC.encode(None))
    r = d.turn(start("batcher", []), *events, go)
    assert r.status is OrchestrationStatus.CONTINUED_AS_NEW
    (cont,) = [o.message for o in r.outgoing if isinstance(o.message, msg.StartOrchestration)]
    assert [CODEC.decode(b) for b in cont.queue_data or ()] == [1, 2, 3]
    while r.status is OrchestrationStatus.CONTINUED_AS_NEW:
        (cont,) = [o.message for o in r.outgoing if isinstance(o.message, msg.StartOrchestration)]
        r = d.turn(cont)
    assert r.status is OrchestrationStatus.COMPLETED
    assert _decoded(r.output) == [0, 1, 2, 3]


def test_queue_events_after_the_continue_go_to_the_next_execution() -> None:
    d = Driver(app)
    d.turn(start("consumer", []))
    late = [msg.QueueEventRaised(queue="jobs", data=CODEC.encode(n)) for n in range(4)]
    r = d.turn(*late)
    assert r.status is OrchestrationStatus.CONTINUED_AS_NEW
    (cont,) = [o.message for o in r.outgoing]
    assert isinstance(cont, msg.StartOrchestration)
    # carried inside the start: older than anything still queued for the next execution
    assert [CODEC.decode(b) for b in cont.queue_data or ()] == [2, 3]
    r2 = d.turn(cont)
    assert _decoded(r2.output) == [0, 1, 2, 3]


def test_raise_event_to_another_instance_is_a_recorded_message() -> None:
    d = Driver(app, "s1")
    r = d.turn(start("sender", "target-1"))
    assert any(isinstance(e, ev.EventSent) for e in r.new_events)
    (out,) = r.outgoing
    assert out.instance_id == "target-1" and out.message_id == "s1:1:2:event"
    assert isinstance(out.message, msg.EventRaised) and out.message.name == "ping"
    assert replay(app, d.history).ok


def test_history_limit_suggests_then_fails_typed() -> None:
    small = App("small", max_history_events=20, continue_as_new_suggested_at=10)
    seen: list[tuple[int, bool]] = []

    @small.orchestration
    async def looping(ctx: OrchestrationContext) -> None:
        while True:
            seen.append((ctx.history_length, ctx.continue_as_new_suggested))
            await ctx.sleep(1)

    d = Driver(small)
    r = d.turn(start("looping"))
    while r.status is OrchestrationStatus.RUNNING:
        r = d.turn(*d.timer_fired(r))
    assert r.status is OrchestrationStatus.FAILED
    assert r.failure is not None and r.failure.type_name == "HistoryLimitExceededError"
    assert r.failure.kind == "history_limit"
    assert len(d.history) == 21  # the maximum plus the failure
    assert any(s for _, s in seen) and not seen[0][1]
    assert all(s == (n >= 10) for n, s in seen)


def test_history_limit_config_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        App(max_history_events=5)
    with pytest.raises(ConfigurationError):
        App(max_history_events=100, continue_as_new_suggested_at=101)


def test_value_bounds_raise_in_the_orchestration() -> None:
    bounded = App("bounded")

    @bounded.orchestration
    async def big(ctx: OrchestrationContext) -> str:
        try:
            ctx.set_value("k", "x" * 70_000)
        except ValidationError as exc:
            return str(exc)
        return "stored"

    r = Driver(bounded).turn(start("big"))
    assert r.status is OrchestrationStatus.COMPLETED
    assert "bytes encoded" in _decoded(r.output)


def test_a_raising_handler_answers_with_its_failure_and_values_can_be_deleted() -> None:
    local = App("local")

    @local.orchestration
    async def box(ctx: OrchestrationContext) -> None:
        def boom(arg: Any) -> None:
            raise KeyError(arg)

        def drop(key: str) -> None:
            ctx.set_value(key, None)

        ctx.set_update_handler("boom", boom)
        ctx.set_update_handler("drop", drop)
        ctx.set_value("a", 1)
        await ctx.wait_for_event("never")

    d = Driver(local)
    first = d.turn(start("box"))
    assert first.values == (("a", CODEC.encode(1)),)
    r = d.turn(update("b", "boom", "k"), update("d", "drop", "a"))
    got = replies(r)
    assert got["b"].failure is not None and got["b"].failure.type_name == "KeyError"
    assert got["d"].failure is None and r.values == (("a", None),)
    assert replay(local, d.history).ok


def test_value_key_bound_and_invalid_names() -> None:
    local = App("keys")

    @local.orchestration
    async def many(ctx: OrchestrationContext) -> list[str]:
        errors = []
        try:
            for n in range(200):
                ctx.set_value(f"k{n}", n)
        except ValidationError as exc:
            errors.append(str(exc))
        for bad in ("", "a\nb"):
            try:
                ctx.raise_event(bad, "e")
            except ValidationError as exc:
                errors.append(type(exc).__name__)
        return errors

    r = Driver(local).turn(start("many"))
    assert _decoded(r.output) == [
        "the instance already has 128 values",
        "InvalidIdError",
        "InvalidIdError",
    ]
    assert len(r.values) == 128


def test_activity_stream_needs_a_worker() -> None:
    from durable_redis.core import ActivityContext
    from durable_redis.errors import ConfigurationError as Config

    actx = ActivityContext(instance_id="i", execution_id=1, activity_id=2, name="a")
    with pytest.raises(Config, match="progress stream"):
        actx.append_stream({"x": 1})


def test_a_suspended_orchestration_answers_each_update_once() -> None:
    from durable_redis.core import run_turn_suspending

    first, suspended = run_turn_suspending(app, "i", [], [start("cart", [])], now_ms=1)
    assert suspended is not None
    history = list(first.new_events)
    r1, suspended = suspended.advance([update("bad", "add", "")], now_ms=2)
    assert set(replies(r1)) == {"bad"}
    assert suspended is not None
    history += r1.new_events
    r2, suspended = suspended.advance([update("ok", "add", "x")], now_ms=3)
    assert set(replies(r2)) == {"ok"}  # the earlier rejection is not answered again
    assert suspended is not None
    suspended.close()


def _decoded(data: bytes | None) -> Any:
    assert data is not None
    return CODEC.decode(data)


# apart from core_apps' goldens (tests/core/test_core_golden.py owns tests/golden/*.history)
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "messaging" / "cart.1.history"


def _cart_history() -> list[ev.HistoryEvent]:
    d = Driver(app, "golden-cart")
    d.turn(start("cart", []))
    d.turn(update("u1", "add", "apple"), update("bad", "add", ""))
    r = d.turn(update("u2", "slow_add", "pear"))
    d.turn(*d.timer_fired(r))
    d.turn(msg.EventRaised(name="checkout", data=CODEC.encode(None)))
    return d.history


def test_golden_history_with_updates_and_values_replays() -> None:
    """A recorded history with every update/value event (re-record with
    DURABLE_REDIS_RECORD_GOLDEN=1, like tests/core/test_core_golden.py)."""
    if os.environ.get("DURABLE_REDIS_RECORD_GOLDEN") == "1":
        write_golden(GOLDEN, _cart_history())
    history = load_history(GOLDEN)
    kinds = {type(e) for e in history}
    assert {ev.UpdateReceived, ev.UpdateCompleted, ev.ValueSet, ev.StreamAppended} - kinds == set()
    assert_replays(app, history)
    assert history == _cart_history()  # today's code records the same events
