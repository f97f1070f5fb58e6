"""Queues and priorities of activity calls in core: what ActivityScheduled records (the call's
queue, else the registered one, else none for "default"), the session rules (a session's
activities all take its queue; a call naming another is a configuration error) and the input
checks."""

from __future__ import annotations

from typing import Any

import pytest

from durable_redis.core import ActivityContext, App, OrchestrationContext, OrchestrationStatus
from durable_redis.errors import InvalidIdError, ValidationError
from durable_redis.testing import InMemoryRunner

app = App("routing-core")


@app.activity(queue="gpu")
def embed(ctx: ActivityContext, n: int) -> int:
    return n


@app.activity
def plain(ctx: ActivityContext, n: int) -> int:
    return n


@app.orchestration
async def mismatch(ctx: OrchestrationContext, _: None) -> int:
    sid = await ctx.open_session(queue="gpu")
    return await ctx.call_activity(plain, 1, session=sid, queue="cpu")


@app.orchestration
async def fixed_by_first(ctx: OrchestrationContext, _: None) -> list[int]:
    sid = await ctx.open_session()
    a = await ctx.call_activity(embed, 1, session=sid)  # fixes the session's queue: gpu
    b = await ctx.call_activity(plain, 2, session=sid)  # registered on default: gpu here too
    return [a, b]


@app.orchestration
async def bad_input(ctx: OrchestrationContext, which: str) -> Any:
    if which == "queue":
        return await ctx.call_activity(plain, 1, queue="no spaces")
    return await ctx.call_activity(plain, 1, priority=1 << 15)


def _run(fn: Any, value: Any = None) -> Any:
    runner = InMemoryRunner(app)
    runner.start(fn, value, instance_id="i")
    runner.run()
    return runner.instances["i"]


def test_a_call_naming_another_queue_than_its_session_fails_the_orchestration() -> None:
    inst = _run(mismatch)
    assert inst.status is OrchestrationStatus.FAILED
    assert inst.failure.type_name == "SessionQueueError" and "gpu" in inst.failure.message


def test_a_sessions_first_activity_fixes_its_queue() -> None:
    inst = _run(fixed_by_first)
    assert inst.status is OrchestrationStatus.COMPLETED
    queues = [e.queue for e in inst.history if type(e).__name__ == "ActivityScheduled"]
    assert queues == ["gpu", "gpu"]


@pytest.mark.parametrize(("which", "error"), [("queue", InvalidIdError), ("p", ValidationError)])
def test_bad_queue_or_priority_is_a_typed_error(which: str, error: type[Exception]) -> None:
    inst = _run(bad_input, which)
    assert inst.status is OrchestrationStatus.FAILED
    assert inst.failure.type_name == error.__name__
