"""Property: random orchestrations fed their own completions in random order finish, and
replaying their recorded history from scratch reproduces it exactly with no new commands."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_redis.core import ActivityContext, App, OrchestrationContext, OrchestrationStatus
from durable_redis.core import events as ev
from durable_redis.testing import InMemoryRunner, Instance, replay_history

app = App("prop", max_sessions_per_orchestration=3)


@app.activity
def echo(ctx: ActivityContext, value: int) -> int:
    return value


@app.orchestration
async def program(ctx: OrchestrationContext, state: dict[str, Any]) -> list[Any]:
    steps: list[list[Any]] = state["steps"]
    out: list[Any] = state["out"]
    session: str | None = state["session"]
    while steps:
        kind, arg = steps.pop(0)
        if kind == "act":
            out.append(await ctx.call_activity(echo, arg))
        elif kind == "timer":
            await ctx.sleep(arg)
            out.append("t")
        elif kind == "event":
            out.append(await ctx.wait_for_event(arg))
        elif kind == "gather":
            values = await ctx.when_all([ctx.call_activity(echo, i) for i in range(arg)])
            out.append(sum(values))
        elif kind == "any":
            racers = [ctx.call_activity(echo, i) for i in range(arg)]
            await ctx.when_any([*racers, ctx.sleep(10_000)])
            out.append("any")
        elif kind == "open":
            if session is None:
                session = await ctx.open_session()
        elif kind == "close":
            if session is not None:
                await ctx.close_session(session)
                session = None
        elif kind == "sact":
            out.append(await ctx.call_activity(echo, arg, session=session))
        elif kind == "can":
            ctx.continue_as_new({"steps": steps, "out": out, "session": session})
    return out


STEP = st.one_of(
    st.tuples(st.just("act"), st.integers(0, 9)),
    st.tuples(st.just("timer"), st.integers(0, 5)),
    st.tuples(st.just("event"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("gather"), st.integers(1, 3)),
    st.tuples(st.just("any"), st.integers(1, 3)),
    st.tuples(st.just("open"), st.just(0)),
    st.tuples(st.just("close"), st.just(0)),
    st.tuples(st.just("sact"), st.integers(0, 9)),
    st.tuples(st.just("can"), st.just(0)),
)


def expected(steps: list[tuple[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for kind, arg in steps:
        if kind in ("act", "sact"):
            out.append(arg)
        elif kind == "timer":
            out.append("t")
        elif kind == "event":
            out.append(f"data-{arg}")
        elif kind == "gather":
            out.append(sum(range(arg)))
        elif kind == "any":
            out.append("any")
    return out


def pending_events(history: list[ev.HistoryEvent]) -> list[str]:
    waiting: list[str] = []
    for event in history:
        if isinstance(event, ev.EventSubscribed):
            waiting.append(event.name)
        elif isinstance(event, ev.EventRaised):
            waiting.remove(event.name)
    return waiting


def drive(runner: InMemoryRunner, steps: list[tuple[str, Any]]) -> Instance:
    """Run ``program`` over ``steps`` to completion, raising each event it waits for."""
    state = {"steps": [list(s) for s in steps], "out": [], "session": None}
    runner.start(program, state, instance_id="p")
    inst = runner.instances["p"]
    for _ in range(50):
        runner.run()
        if inst.status.is_terminal:
            break
        for name in pending_events(inst.history):
            runner.raise_event("p", name, f"data-{name}")
    assert inst.status is OrchestrationStatus.COMPLETED, inst.failure
    assert runner.result("p") == expected(steps)
    return inst


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, max_size=8), seed=st.integers(0, 2**32 - 1))
def test_random_orchestrations_finish_and_replay_exactly(
    steps: list[tuple[str, Any]], seed: int
) -> None:
    runner = InMemoryRunner(app, rng=random.Random(seed))
    inst = drive(runner, steps)
    assert len(inst.executions) == sum(1 for kind, _ in steps if kind == "can")
    for history in [*inst.executions, inst.history]:
        assert [e.event_id for e in history] == list(range(1, len(history) + 1))
        result = replay_history(app, history)
        assert result.nondeterminism is None, result.nondeterminism
        assert result.new_events == ()  # no new commands
        assert result.events_replayed == len(history)
    # every activity dispatched was either completed, failed or cancelled: nothing lost
    scheduled = {
        (len(inst.executions) + 1, e.event_id)
        for e in inst.history
        if isinstance(e, ev.ActivityScheduled)
    }
    dispatched = {
        (t.execution_id, t.activity_id)
        for t in runner.activity_log
        if t.execution_id == len(inst.executions) + 1
    }
    assert dispatched <= scheduled
