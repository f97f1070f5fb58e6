"""The runtime's cache of suspended orchestrations: used only for the exact committed history."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from durable_redis import core
from durable_redis.core import App, OrchestrationContext
from durable_redis.core import messages as msg
from durable_redis.runtime import _bridge
from durable_redis.storage.base import OrchestrationLease

app = App("suspended-cache")


@app.orchestration
async def waiter(ctx: OrchestrationContext) -> str:
    return str(await ctx.wait_for_event("go"))


@app.orchestration
async def two_waits(ctx: OrchestrationContext) -> int:
    return int(await ctx.wait_for_event("one")) + int(await ctx.wait_for_event("two"))


def _lease(iid: str, execution_id: int, history: Sequence[bytes]) -> OrchestrationLease:
    return OrchestrationLease(
        instance_id=iid,
        token="t",
        lease_until_ms=0,
        fetched_at_ms=0,
        execution_id=execution_id,
        history=list(history),
        messages=[],
        attempt=1,
        instance=None,
    )


def _first_turn(cache: _bridge.SuspendedCache, iid: str) -> tuple[list[bytes], object]:
    start = msg.StartOrchestration(name="waiter", input=b"")
    result, after = _bridge.run_turn(app, iid, [], [start], 1, app.codec)
    assert after is not None
    commit = _bridge.to_commit(result)
    cache.put(_lease(iid, 0, []), commit, after)
    return list(commit.events), after


def test_take_matches_only_the_committed_history() -> None:
    cache = _bridge.SuspendedCache()
    history, kept = _first_turn(cache, "a")
    assert isinstance(kept, core.SuspendedOrchestration)
    assert cache.take(_lease("a", 1, history)) is kept
    assert cache.take(_lease("a", 1, history)) is None  # taken: owned by one turn
    result = core.TurnResult(
        execution_id=1,
        history_len_before=len(history),
        new_events=(),
        status=core.OrchestrationStatus.RUNNING,
    )
    cache.put(_lease("a", 1, history), _bridge.to_commit(result), kept)  # a turn of stale messages
    assert len(cache) == 1
    assert cache.take(_lease("a", 1, [*history, history[-1]])) is None  # longer: closed
    assert kept.closed


def test_mismatches_close_and_lru_evicts() -> None:
    cache = _bridge.SuspendedCache(max_instances=1)
    history, first = _first_turn(cache, "a")
    assert cache.take(_lease("a", 2, history)) is None  # another execution
    assert first.closed  # type: ignore[attr-defined]
    _, second = _first_turn(cache, "b")
    _, third = _first_turn(cache, "c")  # evicts "b"
    assert second.closed and not third.closed  # type: ignore[attr-defined]
    cache.discard("c")
    assert third.closed  # type: ignore[attr-defined]
    _, fourth = _first_turn(cache, "d")
    cache.clear()
    assert fourth.closed and len(cache) == 0  # type: ignore[attr-defined]
    # a commit that does not fit the orchestration's length is not kept
    start = msg.StartOrchestration(name="waiter", input=b"")
    result, after = _bridge.run_turn(app, "e", [], [start], 1, app.codec)
    assert after is not None
    commit = dataclasses.replace(_bridge.to_commit(result), expected_history_len=3)
    cache.put(_lease("e", 1, [b"x", b"y", b"z"]), commit, after)
    assert after.closed and len(cache) == 0


def test_the_entry_grows_by_each_commit_and_matches_the_stored_bytes() -> None:
    """The entry keeps the bytes its turns committed, grown by each commit's new events: the
    next lease is used iff its history is exactly those bytes (also after a resume, whose
    lease had the shorter history); a history one event longer, or with a changed entry of
    the same length, closes it."""
    cache = _bridge.SuspendedCache()
    start = msg.StartOrchestration(name="two_waits", input=b"")
    result, after = _bridge.run_turn(app, "a", [], [start], 1, app.codec)
    assert after is not None
    first = _bridge.to_commit(result)
    cache.put(_lease("a", 0, []), first, after)
    history = list(first.events)
    lease = _lease("a", 1, [bytes(e) for e in history])  # equal bytes, other objects
    orchestration = cache.take(lease)
    assert orchestration is after
    go = msg.EventRaised(name="one", data=app.codec.encode(1))
    result, after = _bridge.advance(orchestration, [go], 2)
    assert after is not None  # waits for "two" now
    second = _bridge.to_commit(result)
    assert second.expected_history_len == len(history) and second.events
    cache.put(lease, second, after)
    stored = [*history, *second.events]
    assert cache.take(_lease("a", 1, [*stored, b"more"])) is None and after.closed
    assert len(cache) == 0
    # the same again, then a stored entry changed in the middle (same length): closed
    result, after = _bridge.run_turn(app, "b", [], [start], 1, app.codec)
    assert after is not None
    cache.put(_lease("b", 0, []), _bridge.to_commit(result), after)
    changed = list(_bridge.to_commit(result).events)
    changed[1] = changed[1] + b"x"
    assert cache.take(_lease("b", 1, changed)) is None and after.closed
