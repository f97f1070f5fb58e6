"""Golden histories: recorded by the code, committed under tests/golden/, replayed by today's code.

Set ``DURABLE_REDIS_RECORD_GOLDEN=1`` to re-record them (only when a change to the history format
or to the orchestrations in core_apps.py is intended; review the diff).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import core_apps
import pytest

from durable_redis.core import App, OrchestrationContext, OrchestrationStatus
from durable_redis.errors import NondeterminismError
from durable_redis.testing import (
    InMemoryRunner,
    assert_replays,
    load_history,
    replay_history,
    save_history,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
RECORD = os.environ.get("DURABLE_REDIS_RECORD_GOLDEN") == "1"


def _record_all() -> dict[str, list[Any]]:
    """Run every golden scenario in memory; one history per (instance, execution)."""
    histories: dict[str, list[Any]] = {}
    scenarios: list[tuple[str, Any, Any, Callable[[InMemoryRunner], None] | None]] = [
        ("checkout", core_apps.checkout, core_apps.Order("o1", ["a", "b"], 3.5), _approve),
        ("retrying", core_apps.retrying, 3, None),
        ("parent", core_apps.parent, 2, None),
        ("counter", core_apps.counter, 2, None),
        ("structured", core_apps.structured, ["x", "y"], None),
        ("steps", core_apps.steps, None, None),
        ("reset", core_apps.steps, None, _reset_after_reserve),
        ("routed", core_apps.routed, None, None),
        ("limited", core_apps.limited, None, None),
    ]
    for name, fn, value, between in scenarios:
        runner = InMemoryRunner(core_apps.app)
        runner.start(fn, value, instance_id=name)
        runner.run(advance_clock=between is None)
        if between is not None:
            between(runner)
            runner.run()
        for iid, inst in sorted(runner.instances.items()):
            assert inst.status is OrchestrationStatus.COMPLETED, (iid, inst.failure)
            for n, history in enumerate([*inst.executions, inst.history], start=1):
                histories[f"{iid.replace(':', '_')}.{n}"] = history
    return histories


def _approve(runner: InMemoryRunner) -> None:
    runner.raise_event("checkout", "approve", True)


def _reset_after_reserve(runner: InMemoryRunner) -> None:
    """What ``client.reset("reset", 4)`` writes (lua/reset_instance.lua), while ``steps``
    sleeps: execution 2 = events 1..4 (reserve done) + ExecutionReset; its ships re-run."""
    from durable_redis.core import decode_event, messages
    from durable_redis.core.reset import plan_reset

    inst = runner.instances["reset"]
    plan = plan_reset(inst.history, 4, reason="golden", by="tests", now_ms=runner.now_ms)
    kept = inst.history[1 : plan.keep]
    inst.executions.append(inst.history)
    inst.history = [decode_event(plan.started), *kept, decode_event(plan.reset_event)]
    inst.queue.clear()
    wake = messages.TimerFired(execution_id=2, timer_id=0, fire_at_ms=runner.now_ms)
    runner._enqueue("reset", "reset:wake", wake)


def test_golden_files_exist_or_are_recorded() -> None:
    histories = _record_all()
    if RECORD:
        GOLDEN.mkdir(exist_ok=True)
        for old in GOLDEN.glob("*.history"):
            old.unlink()
        for key, history in histories.items():
            save_history(GOLDEN / f"{key}.history", history)
    files = sorted(p.stem for p in GOLDEN.glob("*.history"))
    assert files == sorted(histories), "golden files out of date: re-record on purpose"
    # recording is deterministic: today's run reproduces the committed bytes
    # (tracebacks name the checkout's absolute paths, so they are compared without them)
    for key, history in histories.items():
        assert _portable(load_history(GOLDEN / f"{key}.history")) == _portable(history), key


def _portable(history: list[Any]) -> list[Any]:
    """The history with failure tracebacks blanked: they depend on where the repo lives."""
    out = []
    for event in history:
        failure = getattr(event, "failure", None)
        if failure is not None:
            event = dataclasses.replace(event, failure=dataclasses.replace(failure, traceback=""))
        out.append(event)
    return out


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.history")), ids=lambda p: p.stem)
def test_golden_history_replays_cleanly(path: Path) -> None:
    history = load_history(path)
    result = replay_history(core_apps.app, path)
    assert result.ok, result.nondeterminism
    assert result.events_replayed == len(history)
    assert_replays(core_apps.app, path)


# -- deliberately changed orchestrations ----------------------------------------------------------
Orch = Callable[[OrchestrationContext, None], Coroutine[Any, Any, int]]


def _variant(body: Orch) -> App:
    changed = App("changed")
    changed.orchestration(name="steps")(body)
    return changed


async def _renamed(ctx: OrchestrationContext, _: None) -> int:
    s = await ctx.open_session_with_id("s1")
    return int(await ctx.call_activity("reserve_v2", ["a"], session=s))


async def _new_input(ctx: OrchestrationContext, _: None) -> int:
    s = await ctx.open_session_with_id("s1")
    return int(await ctx.call_activity("reserve", ["z"], session=s))


async def _no_session(ctx: OrchestrationContext, _: None) -> int:
    await ctx.open_session_with_id("s1")
    return int(await ctx.call_activity("reserve", ["a"]))


async def _reordered(ctx: OrchestrationContext, _: None) -> int:
    s = await ctx.open_session_with_id("s1")
    a = await ctx.call_activity("reserve", ["a"], session=s)
    await asyncio.gather(ctx.call_activity("ship", "c"), ctx.call_activity("ship", "b"))
    return int(a)


async def _missing(ctx: OrchestrationContext, _: None) -> int:
    s = await ctx.open_session_with_id("s1")
    a = await ctx.call_activity("reserve", ["a"], session=s)
    await ctx.call_activity("ship", "b")
    return int(a)


async def _extra(ctx: OrchestrationContext, _: None) -> int:
    s = await ctx.open_session_with_id("s1")
    a = await ctx.call_activity("reserve", ["a"], session=s)
    await asyncio.gather(*(ctx.call_activity("ship", x) for x in "bcd"))
    return int(a)


async def _returns_early(ctx: OrchestrationContext, _: None) -> int:
    s = await ctx.open_session_with_id("s1")
    return int(await ctx.call_activity("reserve", ["a"], session=s))


@pytest.mark.parametrize(
    ("body", "position", "recorded", "actual"),
    [
        (_renamed, 3, "name='reserve'", "name='reserve_v2'"),
        (_new_input, 3, "ActivityScheduled", "input="),
        (_no_session, 3, "session_id='s1'", "session_id=None"),
        (_reordered, 5, "ActivityScheduled(name='ship'", "ActivityScheduled(name='ship'"),
        (_missing, 6, "ActivityScheduled(name='ship'", "nothing"),
        (_extra, 7, "ActivityCompleted", "ActivityScheduled(name='ship'"),
        (_returns_early, 5, "ActivityScheduled(name='ship'", "OrchestrationCompleted"),
    ],
    ids=["name", "input", "session", "reordered", "missing", "extra", "returned-early"],
)
def test_changed_orchestration_is_nondeterministic(
    body: Orch, position: int, recorded: str, actual: str
) -> None:
    path = GOLDEN / "steps.1.history"
    with pytest.raises(NondeterminismError) as info:
        assert_replays(_variant(body), path)
    error = info.value
    assert error.instance_id == "steps"
    assert error.position == position
    assert recorded in error.recorded
    assert actual in error.actual
    assert f"event {position}" in str(error) and "'steps'" in str(error)
    if body is _reordered:
        assert "'c'" not in error.recorded  # recorded b first, code now did c first


def test_nondeterminism_fails_the_live_turn() -> None:
    history = load_history(GOLDEN / "steps.1.history")
    cut = history[:4]  # started, session, reserve scheduled, reserve completed
    from durable_redis.core import run_turn

    result = run_turn(_variant(_renamed), "steps", cut[:3], [], now_ms=1)
    assert result.status is OrchestrationStatus.FAILED
    assert result.failure is not None and result.failure.kind == "nondeterminism"
    assert result.nondeterminism is not None and result.nondeterminism.position == 3
    assert result.new_events[-1].event_id == 4
    assert result.sessions_closed == ("s1",)
    assert result.cancelled_activities == ("1:3",)


def test_a_changed_orchestration_diverges_past_a_reset_point_too() -> None:
    with pytest.raises(NondeterminismError) as info:
        assert_replays(_variant(_reordered), GOLDEN / "reset.2.history")
    assert info.value.position == 6  # the first ship, right after the ExecutionReset (event 5)
    assert "ActivityScheduled(name='ship'" in info.value.recorded


def test_reset_points_are_where_nothing_is_in_flight() -> None:
    from durable_redis.core.reset import choose_point, reset_points

    history = load_history(GOLDEN / "steps.1.history")
    kinds = [type(e).__name__ for e in history]
    assert kinds[:4] == [
        "OrchestrationStarted",
        "SessionOpened",
        "ActivityScheduled",
        "ActivityCompleted",
    ]
    points = reset_points(history)
    assert points[:3] == [1, 2, 4]  # 3 schedules reserve: in flight until 4
    assert history[-1].event_id not in points  # the terminal event
    assert choose_point(history, "last-turn") == points[-1]
    assert choose_point(history, "before-failure") == points[-1]  # nothing failed


def _line_of(fn: Any, text: str) -> str:
    import inspect

    lines, first = inspect.getsourcelines(fn)
    index = next(i for i, line in enumerate(lines) if text in line)
    return f"{inspect.getsourcefile(fn)}:{first + index}"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (_renamed, 'ctx.call_activity("reserve_v2"'),  # the call that issued the other command
        (_reordered, "await asyncio.gather("),
        (_missing, 'await ctx.call_activity("ship", "b")'),  # where it waits instead
    ],
    ids=["call", "gather", "waiting"],
)
def test_a_divergence_names_the_source_line_of_the_orchestration(body: Orch, text: str) -> None:
    with pytest.raises(NondeterminismError) as info:
        assert_replays(_variant(body), GOLDEN / "steps.1.history")
    assert info.value.source == _line_of(body, text)
    assert f"(at {info.value.source})" in str(info.value)
