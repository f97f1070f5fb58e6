"""Flow limits of activity calls in core (docs/routing.md): what ActivityScheduled records (the
call's ``limit=``, else the registered one; the key taken from the input), what replay uses
(the recorded key and limits, so a changed registration moves only new calls), where a limit
does not apply (sessions, local activities, a registered debounce / throttle) and the input
checks (a typed error raised in the orchestration's code)."""

from __future__ import annotations

from typing import Any

import pytest

from durable_redis.core import ActivityContext, App, OrchestrationContext, OrchestrationStatus
from durable_redis.core import events as ev
from durable_redis.core.jobs import Limit
from durable_redis.errors import InvalidIdError, ValidationError
from durable_redis.testing import InMemoryRunner, replay_history

app = App("limits-core")


@app.activity(limit=Limit(key="tenant:{tenant}", concurrency=5))
def per_tenant(ctx: ActivityContext, args: dict[str, str]) -> str:
    return args["tenant"]


@app.activity(limit=Limit(key="reindex", debounce=2))
def debounced(ctx: ActivityContext, n: int) -> int:
    return n


@app.orchestration
async def calls(ctx: OrchestrationContext, _: None) -> list[str]:
    a = await ctx.call_activity(per_tenant, {"tenant": "t1"})
    b = await ctx.call_activity(
        per_tenant, {"tenant": "t2"}, limit=Limit(key=lambda x: x["tenant"] + "!", rate=3)
    )
    c = await ctx.call_activity("per_tenant", {"tenant": "t3"})  # by name: as registered
    d = await ctx.call_local_activity(per_tenant, {"tenant": "t4"})  # local: no limit
    s = await ctx.open_session()
    e = await ctx.call_activity(per_tenant, {"tenant": "t5"}, session=s)  # session: none
    await ctx.call_activity(debounced, 1)  # a registered debounce is for its jobs only
    return [a, b, c, d, e]


@app.orchestration
async def bad(ctx: OrchestrationContext, which: str) -> Any:
    if which == "session":
        s = await ctx.open_session()
        return await ctx.call_activity(per_tenant, {"tenant": "x"}, session=s, limit=Limit(key="k"))
    if which == "debounce":
        return await ctx.call_activity(
            per_tenant, {"tenant": "x"}, limit=Limit(key="k", debounce=1)
        )
    if which == "template":
        return await ctx.call_activity(per_tenant, {"other": "x"})
    if which == "key":
        return await ctx.call_activity(per_tenant, {"tenant": "x"}, limit=Limit(key=lambda _: ""))
    return await ctx.call_activity(per_tenant, {"tenant": "x"}, limit="5")  # type: ignore[arg-type]


async def changed_limits(ctx: OrchestrationContext, _: None) -> list[str]:
    other = Limit(key="flat", concurrency=1)
    a = await ctx.call_activity(per_tenant, {"tenant": "t1"}, limit=other)
    b = await ctx.call_activity(per_tenant, {"tenant": "t2"}, limit=other)
    c = await ctx.call_activity("per_tenant", {"tenant": "t3"}, limit=other)
    d = await ctx.call_local_activity(per_tenant, {"tenant": "t4"})
    s = await ctx.open_session()
    e = await ctx.call_activity(per_tenant, {"tenant": "t5"}, session=s)
    await ctx.call_activity(debounced, 1, limit=other)
    return [a, b, c, d, e]


def _run(fn: Any, value: Any = None, which_app: App = app) -> Any:
    runner = InMemoryRunner(which_app)
    runner.start(fn, value, instance_id="i")
    runner.run()
    return runner.instances["i"]


def _scheduled(history: list[Any]) -> list[tuple[str | None, str | None, bool]]:
    return [
        (e.flow_key, e.flow, bool(e.local)) for e in history if isinstance(e, ev.ActivityScheduled)
    ]


def test_the_call_or_registered_limit_is_recorded_with_its_key() -> None:
    inst = _run(calls)
    assert inst.status is OrchestrationStatus.COMPLETED, inst.failure
    assert _scheduled(inst.history) == [
        ("tenant:t1", "5 - - 1", False),
        ("t2!", "- 3 1000 1", False),
        ("tenant:t3", "5 - - 1", False),
        (None, None, True),
        (None, None, False),
        (None, None, False),
    ]


def test_replay_uses_the_recorded_limits(tmp_path: Any) -> None:
    """The same calls with other limits replay the recorded history cleanly: limits are not
    compared, and the recorded ones are what the engine keeps (a redeploy with another
    ``limit=`` moves only new calls)."""
    from durable_redis.testing import save_history

    inst = _run(calls)
    path = tmp_path / "calls.history"
    save_history(path, inst.history)
    other = App("limits-core")
    other.orchestration(name="calls")(changed_limits)
    result = replay_history(other, path)
    assert result.ok, result.nondeterminism
    assert result.events_replayed == len(inst.history)


@pytest.mark.parametrize(
    ("which", "error"),
    [
        ("session", ValidationError),
        ("debounce", ValidationError),
        ("template", ValidationError),
        ("key", InvalidIdError),
        ("type", ValidationError),
    ],
)
def test_bad_limits_are_typed_errors_in_the_orchestration(
    which: str, error: type[Exception]
) -> None:
    inst = _run(bad, which)
    assert inst.status is OrchestrationStatus.FAILED
    assert inst.failure.type_name == error.__name__, inst.failure
