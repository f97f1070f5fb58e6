"""``ctx.patched`` / ``ctx.deprecate_patch`` (issue 16): one code base runs instances started
on the old code down the old path and new ones down the new, recorded in history."""

from __future__ import annotations

from typing import Any

import pytest

from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.core import events as ev
from durable_redis.errors import ValidationError
from durable_redis.testing import InMemoryRunner, replay_history

PATCH = "ship-before-reserve"


def _app(variant: str) -> App:
    """``order`` as deployed: v1 reserve-wait-ship, v2 swapped (unpatched), v3 swapped behind
    ``patched``, v4 the patch deprecated (new path only)."""
    app = App("patching")

    @app.activity
    def reserve(ctx: ActivityContext, item: str) -> str:
        return f"reserved {item}"

    @app.activity
    def ship(ctx: ActivityContext, item: str) -> str:
        return f"shipped {item}"

    async def old(ctx: OrchestrationContext, item: str) -> list[Any]:
        reserved = await ctx.call_activity(reserve, item)
        paid = await ctx.wait_for_event("paid")
        return [reserved, paid, await ctx.call_activity(ship, item)]

    async def new(ctx: OrchestrationContext, item: str) -> list[Any]:
        shipped = await ctx.call_activity(ship, item)
        paid = await ctx.wait_for_event("paid")
        return [await ctx.call_activity(reserve, item), paid, shipped]

    @app.orchestration(name="order")
    async def order(ctx: OrchestrationContext, item: str) -> list[Any]:
        if variant == "v1":
            return await old(ctx, item)
        if variant == "v2":
            return await new(ctx, item)
        if variant == "v3":
            if ctx.patched(PATCH):
                assert ctx.patched(PATCH)  # the first answer sticks
                return await new(ctx, item)
            assert not ctx.patched(PATCH)
            return await old(ctx, item)
        ctx.deprecate_patch(PATCH)
        return await new(ctx, item)

    return app


def _waiting_on(variant: str, instance_id: str = "i") -> InMemoryRunner:
    runner = InMemoryRunner(_app(variant))
    runner.start("order", "book", instance_id=instance_id)
    runner.run()
    return runner


def _deploy_and_pay(runner: InMemoryRunner, variant: str) -> None:
    runner.app = _app(variant)
    runner.raise_event("i", "paid", "card")
    runner.run()


def test_an_instance_started_on_v1_completes_on_patched_code_down_the_old_path() -> None:
    runner = _waiting_on("v1")
    _deploy_and_pay(runner, "v3")
    assert runner.result("i") == ["reserved book", "card", "shipped book"]
    history = runner.instances["i"].history
    assert not any(isinstance(e, ev.PatchMarker) for e in history)
    assert replay_history(_app("v3"), history).ok


def test_unpatched_changed_code_diverges() -> None:
    runner = _waiting_on("v1")
    _deploy_and_pay(runner, "v2")
    inst = runner.instances["i"]
    assert inst.failure is not None and inst.failure.kind == "nondeterminism"


def test_a_new_instance_on_patched_code_records_the_marker_and_takes_the_new_path() -> None:
    runner = _waiting_on("v3")
    history = runner.instances["i"].history
    markers = [e for e in history if isinstance(e, ev.PatchMarker)]
    assert [m.change_id for m in markers] == [PATCH]
    assert history.index(markers[0]) == 1  # recorded where the code asked, right after start
    runner.raise_event("i", "paid", "card")
    runner.run()
    assert runner.result("i") == ["reserved book", "card", "shipped book"]
    assert [
        e.name for e in runner.instances["i"].history if isinstance(e, ev.ActivityScheduled)
    ] == [
        "ship",
        "reserve",
    ]
    done = runner.instances["i"].history
    assert replay_history(_app("v3"), done).ok
    assert replay_history(_app("v4"), done).ok  # deprecated: the recorded marker is accepted
    rollback = replay_history(_app("v1"), done)  # rolling back past a patch diverges
    assert rollback.nondeterminism is not None
    assert "PatchMarker(change_id='ship-before-reserve')" in str(rollback.nondeterminism)


def test_deprecated_patch_writes_no_marker_and_replays() -> None:
    runner = _waiting_on("v4")
    runner.raise_event("i", "paid", "card")
    runner.run()
    history = runner.instances["i"].history
    assert runner.result("i") == ["reserved book", "card", "shipped book"]
    assert not any(isinstance(e, ev.PatchMarker) for e in history)
    assert replay_history(_app("v4"), history).ok


@pytest.mark.parametrize("bad", ["", 3, "x" * 201])
def test_a_bad_change_id_is_a_validation_error(bad: Any) -> None:
    app = App("bad-patch")

    @app.orchestration
    async def wf(ctx: OrchestrationContext) -> bool:
        return ctx.patched(bad)

    runner = InMemoryRunner(app)
    runner.start("wf")
    runner.run()
    failure = runner.instances["i"].failure
    assert failure is not None and failure.type_name == ValidationError.__name__
