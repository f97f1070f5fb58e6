"""Property: a suspended orchestration advanced turn by turn gives exactly the TurnResults of a
full ``run_turn`` replay from the same history, for random programs fed in random order."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_redis.core import (
    OrchestrationStatus,
    SuspendedOrchestration,
    TurnResult,
    run_turn,
    run_turn_suspending,
)
from durable_redis.core import messages as msg
from durable_redis.testing import InMemoryRunner, Instance
from tests.core.test_core_property import STEP, app, drive


def _comparable(result: TurnResult) -> tuple[Any, ...]:
    nondeterminism = result.nondeterminism
    plain = dataclasses.replace(result, nondeterminism=None)
    return (plain, None if nondeterminism is None else str(nondeterminism))


class ResumingRunner(InMemoryRunner):
    """Runs every turn both ways and checks they agree; commits the full replay's result."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.suspended: dict[str, SuspendedOrchestration] = {}
        self.resumed_turns = 0

    def _turn(self, inst: Instance) -> None:
        visible = [q for q in inst.queue if q[0] <= self.now_ms]
        if self.rng is not None:
            visible = visible[: self.rng.randint(1, len(visible))]
        for q in visible:
            inst.queue.remove(q)
        messages = [m for _, _, m in visible]
        full = run_turn(
            self.app, inst.instance_id, inst.history, messages, now_ms=self.now_ms, codec=self.codec
        )
        kept = self.suspended.pop(inst.instance_id, None)
        if kept is not None and kept.history_len == len(inst.history):
            resumed, after = kept.advance(messages, now_ms=self.now_ms)
            self.resumed_turns += 1
        else:
            if kept is not None:
                kept.close()
            resumed, after = run_turn_suspending(
                self.app,
                inst.instance_id,
                inst.history,
                messages,
                now_ms=self.now_ms,
                codec=self.codec,
            )
        assert _comparable(resumed) == _comparable(full)
        assert (after is not None) == (full.status is OrchestrationStatus.RUNNING)
        if after is not None:
            assert after.history_len == full.history_len_before + len(full.new_events)
            assert after.execution_id == full.execution_id
            self.suspended[inst.instance_id] = after
        self.apply(inst, full)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, max_size=8), seed=st.integers(0, 2**32 - 1))
def test_resumed_turns_equal_full_replays(steps: list[tuple[str, Any]], seed: int) -> None:
    runner = ResumingRunner(app, rng=random.Random(seed))
    drive(runner, steps)
    assert "p" not in runner.suspended  # terminal: nothing kept
    if any(kind in ("act", "timer", "event", "gather", "any", "sact") for kind, _ in steps):
        assert runner.resumed_turns > 0


def test_advance_is_single_use_and_close_is_idempotent() -> None:
    start = msg.StartOrchestration(
        name="program",
        input=app.codec.encode({"steps": [["event", "a"]], "out": [], "session": None}),
    )
    result, kept = run_turn_suspending(app, "x", [], [start], now_ms=1)
    assert result.status is OrchestrationStatus.RUNNING
    assert kept is not None and not kept.closed
    history = list(result.new_events)
    raised = msg.EventRaised(name="a", data=app.codec.encode("v"))
    done, after = kept.advance([raised], now_ms=2)
    assert kept.closed and after is None
    assert done.status is OrchestrationStatus.COMPLETED
    assert _comparable(done) == _comparable(run_turn(app, "x", history, [raised], now_ms=2))
    with pytest.raises(RuntimeError, match="already advanced"):
        kept.advance([], now_ms=3)
    kept.close()  # idempotent


def test_advance_refuses_an_engine_that_changed() -> None:
    start = msg.StartOrchestration(
        name="program",
        input=app.codec.encode({"steps": [["event", "a"]], "out": [], "session": None}),
    )
    _, kept = run_turn_suspending(app, "x", [], [start], now_ms=1)
    assert kept is not None
    kept.history_len += 1  # as if the engine had recorded something while suspended
    with pytest.raises(RuntimeError, match="changed"):
        kept.advance([], now_ms=2)
    assert kept.closed


def test_run_turn_suspending_keeps_nothing_without_a_start() -> None:
    result, kept = run_turn_suspending(app, "x", [], [], now_ms=1)
    assert result.status is OrchestrationStatus.PENDING and kept is None
