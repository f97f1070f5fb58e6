"""Local activities in core: the runner's completions are fed back into the same turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from durable_redis.core import (
    ActivityContext,
    App,
    OrchestrationContext,
    OrchestrationStatus,
    RetryPolicy,
    run_turn,
    run_turn_suspending,
)
from durable_redis.core import events as ev
from durable_redis.core import messages as msg
from durable_redis.errors import ActivityFailedError

app = App("local")


@app.activity
def add_one(ctx: ActivityContext, n: int) -> int:
    return n + 1


@app.orchestration
async def chain(ctx: OrchestrationContext, n: int) -> int:
    for _ in range(3):
        n = await ctx.call_local_activity(add_one, n)
    return n


@app.orchestration
async def retried(ctx: OrchestrationContext, n: int) -> str:
    try:
        await ctx.call_local_activity(
            add_one, n, retry=RetryPolicy(max_attempts=2, initial_delay=1.0)
        )
    except ActivityFailedError as exc:
        return f"failed: {exc.details.message}"
    return "ok"


class Runner:
    """Runs add_one for real, or fails every call when ``fail`` is set; counts the calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, tasks: Sequence[msg.ActivityTask]) -> list[msg.Message]:
        out: list[msg.Message] = []
        for task in tasks:
            self.calls.append(task.activity_id)
            if self.fail:
                out.append(msg.activity_failed(task, ValueError(f"no {task.attempt}")))
            else:
                n = app.codec.decode(task.input, int)
                out.append(msg.activity_completed(task, n + 1, app.codec))
        return out


def _start(name: str, value: Any) -> list[msg.Message]:
    return [msg.start_message(name=name, input=app.codec.encode(value))]


def test_a_chain_completes_in_one_turn_with_the_results_recorded() -> None:
    runner = Runner()
    result, after = run_turn_suspending(
        app, "c1", [], _start("chain", 1), now_ms=1000, local_runner=runner
    )
    assert after is None
    assert result.status is OrchestrationStatus.COMPLETED
    assert app.codec.decode(result.output or b"", int) == 4
    assert result.activities == ()  # nothing dispatched
    kinds = [type(e).__name__ for e in result.new_events]
    assert kinds.count("ActivityScheduled") == 3 and kinds.count("ActivityCompleted") == 3
    scheduled = [e for e in result.new_events if isinstance(e, ev.ActivityScheduled)]
    assert all(e.local for e in scheduled) and len(runner.calls) == 3
    # replay of the committed history: the recorded results, no run, no new event
    replayed = run_turn(app, "c1", list(result.new_events), [], now_ms=2000)
    assert replayed.new_events == () and replayed.status is OrchestrationStatus.COMPLETED
    # the local flag survives encoding; an ordinary ActivityScheduled does not carry it
    assert ev.decode_event(ev.encode_event(scheduled[0])) == scheduled[0]
    plain = ev.ActivityScheduled(event_id=2, timestamp_ms=1, name="x", input=b"")
    assert b"local" not in ev.encode_event(plain)


def test_without_a_runner_a_local_activity_is_dispatched() -> None:
    result = run_turn(app, "c2", [], _start("chain", 1), now_ms=1000)
    assert result.status is OrchestrationStatus.RUNNING
    assert [t.name for t in result.activities] == [add_one.__name__]


def test_failures_retry_on_durable_timers_and_surface() -> None:
    runner = Runner(fail=True)
    first, after = run_turn_suspending(
        app, "r1", [], _start("retried", 1), now_ms=1000, local_runner=runner
    )
    assert first.status is OrchestrationStatus.RUNNING and first.activities == ()
    timers = [o for o in first.outgoing if isinstance(o.message, msg.TimerFired)]
    assert len(timers) == 1 and timers[0].visible_at_ms == 2000 and len(runner.calls) == 1
    assert after is not None
    after.close()
    history = list(first.new_events)
    fired = timers[0].message
    second, _ = run_turn_suspending(app, "r1", history, [fired], now_ms=2000, local_runner=runner)
    assert second.status is OrchestrationStatus.COMPLETED
    assert app.codec.decode(second.output or b"", str) == "failed: no 2"
    assert len(runner.calls) == 2  # the first attempt was not run again on replay


def test_a_turn_lost_before_its_commit_runs_the_activity_again() -> None:
    runner = Runner()
    lost, _ = run_turn_suspending(
        app, "c3", [], _start("chain", 1), now_ms=1000, local_runner=runner
    )
    assert len(runner.calls) == 3  # not committed: the stored history is still empty
    redone, _ = run_turn_suspending(
        app, "c3", [], _start("chain", 1), now_ms=1500, local_runner=runner
    )
    assert len(runner.calls) == 6 and redone.output == lost.output


@app.orchestration
async def cancels_one(ctx: OrchestrationContext, n: int) -> int:
    dropped = ctx.call_local_activity(add_one, 100)
    kept = ctx.call_local_activity(add_one, n)
    dropped.cancel()
    return await kept


def test_a_local_activity_cancelled_before_its_round_ends_is_not_run() -> None:
    runner = Runner()
    result, after = run_turn_suspending(
        app, "c3", [], _start("cancels_one", 5), now_ms=1000, local_runner=runner
    )
    assert after is None and result.status is OrchestrationStatus.COMPLETED
    assert app.codec.decode(result.output or b"", int) == 6
    scheduled = [e.event_id for e in result.new_events if isinstance(e, ev.ActivityScheduled)]
    assert runner.calls == scheduled[1:]  # the cancelled one never ran
    assert result.activities == ()


def test_a_long_chain_runs_each_local_step_once_in_order() -> None:
    runner = Runner()

    result, _ = run_turn_suspending(
        app, "c4", [], _start("long_chain", 0), now_ms=1000, local_runner=runner
    )
    assert app.codec.decode(result.output or b"", int) == 200
    scheduled = [e.event_id for e in result.new_events if isinstance(e, ev.ActivityScheduled)]
    assert runner.calls == scheduled and len(scheduled) == 200


@app.orchestration
async def long_chain(ctx: OrchestrationContext, n: int) -> int:
    for _ in range(200):
        n = await ctx.call_local_activity(add_one, n)
    return n


def test_a_chain_of_local_steps_builds_the_turn_result_once(monkeypatch: Any) -> None:
    """Each round reads only its own new events: the whole result (O(events)) is built once
    per turn, not once per local step (a chain of N was O(N²): 518 µs a step at N = 100)."""
    from durable_redis.core import turn

    built: list[int] = []
    real = turn.build_result

    def counting(*args: Any) -> Any:
        built.append(1)
        return real(*args)

    monkeypatch.setattr(turn, "build_result", counting)
    run_turn_suspending(app, "c5", [], _start("long_chain", 0), now_ms=1000, local_runner=Runner())
    assert len(built) == 1
