"""reset_instance (issue 16, lua/reset_instance.lua): execution N+1 = the started event given +
events 2..keep of N + the reset event, in one script; N stays readable; a held instance's lock
is stolen, its queued messages kept and made visible, its work items of N deleted; a caller who
read a moved execution or history changes nothing."""

from __future__ import annotations

import pytest
from store_support import LOCK, fetch, snapshot, start, turn, work

from durable_redis.errors import InstanceNotFoundError, InstanceRunningError, LeaseLostError
from durable_redis.storage import InstanceStatus, OrchestrationLease, RedisStore

pytestmark = pytest.mark.anyio


async def _reset(store: RedisStore, iid: str, keep: int, **changes: int) -> int | None:
    info = await store.get_instance(iid)
    assert info is not None
    history = await store.read_history(iid)
    return await store.reset_instance(
        iid,
        execution_id=changes.get("execution_id", info.execution_id),
        history_len=changes.get("history_len", len(history)),
        keep=keep,
        started=b"started-2",
        reset_event=b"reset",
        wake=("wake", b"wake-data"),
    )


async def test_a_held_instance_resets_to_a_new_execution_keeping_the_old_one(
    store: RedisStore,
) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(
        lease, turn(lease, events=[b"e1", b"e2", b"e3"], work_items=[work("1:3")])
    )
    await store.enqueue_message("a", "paid", b"event")
    lease = await fetch(store)
    await store.abandon_orchestration(lease, delay_ms=60_000, count_attempt=False, held="x")
    assert await store.fetch_orchestration(lock_ms=LOCK) is None  # held: retried in a minute
    items = store._pk("a").wq_items
    assert await store._r.hexists(items, "a\n1:3|d")

    assert await _reset(store, "a", 2) == 2
    info = await store.get_instance("a")
    assert info is not None
    assert (info.execution_id, info.status, info.held) == (2, InstanceStatus.RUNNING, None)
    assert await store.read_history("a", 1) == [b"e1", b"e2", b"e3"]
    assert await store.read_history("a", 2) == [b"started-2", b"e2", b"reset"]
    assert not await store._r.hexists(items, "a\n1:3|d")

    lease = await fetch(store)  # the kept event, visible now, and the wake-up
    assert lease.execution_id == 2
    assert sorted(m.message_id for m in lease.messages) == ["paid", "wake"]
    assert all(m.attempt == 1 for m in lease.messages)
    assert lease.history == [b"started-2", b"e2", b"reset"]


async def test_reset_steals_the_lock_of_a_held_turn(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, events=[b"e1"]))
    await store.enqueue_message("a", "m", b"x")
    lease = await fetch(store)
    await store.abandon_orchestration(lease, count_attempt=False, held="diverged")
    retry = await fetch(store)  # the held turn's retry is in progress
    assert await _reset(store, "a", 1) == 2
    with pytest.raises(LeaseLostError):
        await store.commit_turn(retry, turn(retry))
    assert await store.read_history("a", 1) == [b"e1"]


async def test_refused_resets_change_nothing(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, events=[b"e1", b"e2"], work_items=[work("1:2")]))
    before = await snapshot(store)
    with pytest.raises(InstanceRunningError, match="not held"):
        await _reset(store, "a", 1)  # running, not held
    with pytest.raises(InstanceNotFoundError):
        await _reset_missing(store)
    assert await snapshot(store) == before

    lease = await fetch_after_message(store, "a")
    await store.commit_turn(lease, turn(lease, events=[b"e3"], status=InstanceStatus.FAILED))
    before = await snapshot(store)
    assert await _reset(store, "a", 1, history_len=2) is None  # the history moved on
    assert await _reset(store, "a", 1, execution_id=2) is None  # so did the execution
    assert await _reset(store, "a", 4) is None  # past the end
    assert await snapshot(store) == before
    assert await _reset(store, "a", 2) == 2
    assert await store.read_history("a", 2) == [b"started-2", b"e2", b"reset"]
    info = await store.get_instance("a")
    assert info is not None and info.completed_at_ms is None and info.error is None


async def fetch_after_message(store: RedisStore, iid: str) -> OrchestrationLease:
    await store.enqueue_message(iid, f"m-{iid}", b"x")
    return await fetch(store)


async def _reset_missing(store: RedisStore) -> int | None:
    return await store.reset_instance(
        "ghost",
        execution_id=1,
        history_len=1,
        keep=1,
        started=b"s",
        reset_event=b"r",
        wake=("w", b"w"),
    )
