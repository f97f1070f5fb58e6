"""The trace context core carries (docs/operations.md, "Traces"): opaque to core, copied from
the start into ``OrchestrationStarted``, stamped on the work a turn schedules, kept on
replayed commands, carried over continue-as-new."""

from __future__ import annotations

from durable_redis.core import (
    ActivityContext,
    App,
    MsgpackCodec,
    OrchestrationContext,
    run_turn,
    run_turn_suspending,
    start_message,
)
from durable_redis.core import events as ev
from durable_redis.core import messages as msg

app = App("trace")
codec = MsgpackCodec()
START = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
TURN1 = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}
TURN2 = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-1111111111111111-01"}


@app.activity
def step(ctx: ActivityContext, n: int) -> int:
    return n


@app.orchestration
async def flow(ctx: OrchestrationContext, n: int) -> int:
    a = int(await ctx.call_activity(step, n))
    ctx.start_orchestration(flow, -1, instance_id="detached")
    if n > 0:
        ctx.continue_as_new(n - 1)
    return a


def _done(result: object, activity_id: int) -> msg.ActivityCompleted:
    return msg.ActivityCompleted(execution_id=1, activity_id=activity_id, result=codec.encode(1))


def test_new_work_gets_the_turn_context_replayed_work_keeps_its_own() -> None:
    start = start_message(name="flow", input=codec.encode(1), trace=START)
    first, suspended = run_turn_suspending(app, "i", [], [start], now_ms=1, trace=TURN1)
    assert suspended is not None and suspended.started is not None
    assert suspended.started.trace == START
    (scheduled,) = [e for e in first.new_events if isinstance(e, ev.ActivityScheduled)]
    assert scheduled.trace == TURN1 and first.activities[0].trace == TURN1

    # resumed (no replay) and replayed: the same turn, the same stamps
    resumed, after = suspended.advance([_done(first, scheduled.event_id)], now_ms=2, trace=TURN2)
    assert suspended.started is None and after is None  # advanced: single use
    replayed = run_turn(
        app, "i", list(first.new_events), [_done(first, scheduled.event_id)], now_ms=2, trace=TURN2
    )
    for second in (resumed, replayed):
        detached = [e for e in second.new_events if isinstance(e, ev.DetachedOrchestrationStarted)]
        assert [d.trace for d in detached] == [TURN2]
        starts = {o.instance_id: o.message for o in second.outgoing}
        assert isinstance(starts["detached"], msg.StartOrchestration)
        assert starts["detached"].trace == TURN2
        continued = starts["i"]  # continue-as-new keeps the trace of the original start
        assert isinstance(continued, msg.StartOrchestration) and continued.trace == START


def test_untraced_turns_write_no_context() -> None:
    result = run_turn(app, "i", [], [start_message(name="flow", input=codec.encode(0))], now_ms=1)
    assert all(getattr(e, "trace", None) is None for e in result.new_events)
    assert all(b"trace" not in ev.encode_event(e) for e in result.new_events)
