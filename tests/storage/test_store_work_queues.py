"""Activity queues in the work-item scripts: a fetch takes only the queues it serves (the first
one rotating), an item keeps its queue through lease expiry and hand-back, priorities come out
first (FIFO within a level), a session's work is claimed only through its queue, a paused queue
keeps its items, and one blocking wait covers every queue. Run on a real Redis and fakeredis."""

from __future__ import annotations

import time

import anyio
import pytest
from store_support import LOCK, SHORT, fetch, schedule, start, turn, work

from durable_redis.errors import InvalidIdError
from durable_redis.storage import NewWorkItem, RedisStore
from durable_redis.storage.base import WorkTake
from durable_redis.storage.insights import partition_overview

pytestmark = pytest.mark.anyio


def routed(key: str, queue: str | None = None, priority: int = 0, **kw: object) -> NewWorkItem:
    base = work(key, **kw)  # type: ignore[arg-type]
    return NewWorkItem(
        activity_key=base.activity_key,
        data=base.data,
        session_id=base.session_id,
        queue=queue,
        priority=priority,
    )


async def keys(store: RedisStore, *queues: str, lock_ms: int = LOCK, **kw: object) -> list[str]:
    got = await store.fetch_work_items("w", limit=100, lock_ms=lock_ms, queues=queues, **kw)  # type: ignore[arg-type]
    return [lease.activity_key for lease in got]


async def test_a_fetch_takes_only_the_queues_it_serves(store: RedisStore) -> None:
    await schedule(
        store, "a", [work("1:1"), routed("1:2", "gpu"), routed("1:3", "gpu"), routed("1:4", "cpu")]
    )
    assert await keys(store, "default") == ["1:1"]
    assert await keys(store, "default") == []
    assert await keys(store, "cpu", "default") == ["1:4"]
    assert await keys(store, "gpu") == ["1:2", "1:3"]


async def test_default_items_keep_the_stored_format(store: RedisStore) -> None:
    """An item on "default" without a priority is stored exactly as before queues existed: no
    queue field, its plain sequence as score (old data reads as "default")."""
    await schedule(store, "a", [work("1:1"), routed("1:2", "gpu", 3)])
    pk = store._parts[store._pk("a").index]
    raw = store._redis
    fields = {k.decode() for k in await raw.hkeys(pk.wq_items)}
    assert not any(f.endswith("|q") and "1:1" in f for f in fields)
    assert any(f.endswith("|q") and "1:2" in f for f in fields)
    [(_, score)] = await raw.zrange(pk.wq_ready, 0, -1, withscores=True)
    assert 0 < score < 1 << 36
    [(_, gscore)] = await raw.zrange(pk.wq_queue_keys("gpu")[0], 0, -1, withscores=True)
    assert gscore < 0  # priority 3 folded in: ahead of every priority-0 item


async def test_rotation_serves_every_queue(store: RedisStore) -> None:
    await schedule(store, "a", [routed(f"1:{i}", "q1") for i in range(5)] + [routed("1:9", "q2")])
    got = [
        (await store.fetch_work_items("w", limit=1, lock_ms=LOCK, queues=("q1", "q2")))[0]
        for _ in range(2)
    ]
    assert "1:9" in {x.activity_key for x in got}  # q2 is not starved behind q1's backlog


async def test_priorities_first_fifo_within_a_level(store: RedisStore) -> None:
    items = [
        routed("1:1", None, 0),
        routed("1:2", None, 5),
        routed("1:3", None, -2),
        routed("1:4", None, 5),
        routed("1:5", None, 0),
        routed("1:6", None, 32767),
    ]
    await schedule(store, "a", items)
    assert await keys(store, "default") == ["1:6", "1:2", "1:4", "1:1", "1:5", "1:3"]


async def test_an_item_keeps_its_queue_through_expiry_and_abandon(store: RedisStore) -> None:
    await schedule(store, "a", [routed("1:1", "gpu")])
    [lease] = await store.fetch_work_items("w", limit=5, lock_ms=SHORT, queues=("gpu",))
    await anyio.sleep(SHORT * 2 / 1000)
    assert await keys(store, "default") == []  # the expired lease went back to gpu
    [again] = await store.fetch_work_items("w", limit=5, lock_ms=LOCK, queues=("gpu",))
    assert again.item_id == lease.item_id and again.attempt == 2
    await store.abandon_work_item(again)
    assert await keys(store, "default") == []
    assert await keys(store, "gpu") == ["1:1"]


async def test_ack_and_delete_remove_items_of_other_queues(store: RedisStore) -> None:
    await schedule(store, "a", [routed("1:1", "gpu"), routed("1:2", "gpu")])
    [first] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK, queues=("gpu",))
    await store.ack_work_item(first, "done-1:1", b"r")
    gpu_ready = store._parts[store._pk("a").index].wq_queue_keys("gpu")[0]
    assert await store._redis.zcard(gpu_ready) == 1
    await store.delete_instance("a", force=True)
    assert await store._redis.zcard(gpu_ready) == 0
    assert await keys(store, "gpu") == []


async def test_a_session_on_a_queue_is_claimed_only_through_it(store: RedisStore) -> None:
    await schedule(
        store,
        "a",
        [routed("1:1", "gpu", session="s1"), routed("1:2", "gpu", session="s1")],
        sessions_opened=["s1"],
    )
    none = await store.fetch_work_items("cpu", limit=5, lock_ms=LOCK, session_lock_ms=LOCK)
    assert none == []  # a worker of "default" neither claims the session nor runs its work
    got = await store.fetch_work_items(
        "g1", limit=1, lock_ms=LOCK, session_lock_ms=LOCK, queues=("gpu",)
    )
    assert [x.activity_key for x in got] == ["1:1"]
    other = await store.fetch_work_items(
        "g2", limit=5, lock_ms=LOCK, session_lock_ms=LOCK, queues=("gpu",)
    )
    assert other == []  # owned by g1: affinity holds within the queue
    mine = await store.fetch_work_items(
        "g1", limit=5, lock_ms=LOCK, session_lock_ms=LOCK, queues=("gpu",)
    )
    assert [x.activity_key for x in mine] == ["1:2"]


async def test_a_paused_queue_keeps_its_items(store: RedisStore) -> None:
    await schedule(store, "a", [routed("1:1", "gpu"), work("1:2")])
    await store.set_job_queue_paused("gpu", True)
    assert await keys(store, "gpu", "default") == ["1:2"]
    status = await store.queue_status("gpu")
    assert (status.paused, status.work_ready, status.running) == (True, 1, 0)
    await store.set_job_queue_paused("gpu", False)
    await store.queue_status("gpu", wake=True)
    [lease] = await store.fetch_work_items("w", limit=5, lock_ms=LOCK, queues=("gpu",))
    status = await store.queue_status("gpu")
    assert (status.paused, status.work_ready, status.work_running) == (False, 0, 1)
    await store.ack_work_item(lease, "done", b"r")
    assert (await store.queue_status("gpu")).running == 0


async def test_resume_wakes_a_worker_waiting_on_the_queue(store: RedisStore) -> None:
    await store.set_job_queue_paused("gpu", True)
    await schedule(store, "a", [routed("1:1", "gpu")])

    async def resume_later() -> None:
        await anyio.sleep(0.3)
        await store.set_job_queue_paused("gpu", False)
        await store.queue_status("gpu", wake=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(resume_later)
        t0 = time.monotonic()
        got = await store.fetch_work_items(
            "w", limit=5, lock_ms=LOCK, wait_ms=5000, queues=("gpu",)
        )
        waited = time.monotonic() - t0
    assert [x.activity_key for x in got] == ["1:1"]
    assert 0.2 < waited < 4


async def test_one_blocking_wait_covers_every_queue(store: RedisStore) -> None:
    async def commit_later() -> None:
        await anyio.sleep(0.2)
        await schedule(store, "late", [routed("1:1", "q2")])

    async with anyio.create_task_group() as tg:
        tg.start_soon(commit_later)
        t0 = time.monotonic()
        got = await store.fetch_work_items(
            "w", limit=5, lock_ms=LOCK, wait_ms=5000, queues=("q1", "q2")
        )
        waited = time.monotonic() - t0
    assert [x.activity_key for x in got] == ["1:1"]
    assert 0.1 < waited < 4  # woken by q2's marker, not by the timeout


async def test_bad_queue_names_are_refused(store: RedisStore) -> None:
    with pytest.raises(InvalidIdError):
        await store.fetch_work_items("w", limit=1, lock_ms=LOCK, queues=("no spaces",))


async def test_a_commit_takes_inline_only_default_unprioritised_unpaused_items(
    store: RedisStore,
) -> None:
    await start(store, "a")
    lease = await fetch(store)
    items = [routed("1:1", "gpu"), work("1:2"), routed("1:3", None, 4), work("1:4")]
    taken = await store.commit_turn(
        lease, turn(lease, work_items=items), take=WorkTake("w1", limit=10, lock_ms=LOCK)
    )
    # gpu's item is never taken; the prioritised one is queued, and the later one waits behind
    assert [t.activity_key for t in taken] == ["1:2"]
    assert await keys(store, "default") == ["1:3", "1:4"]
    assert await keys(store, "gpu") == ["1:1"]
    await store.set_job_queue_paused("default", True)
    await start(store, "b")
    lease = await fetch(store)
    taken = await store.commit_turn(
        lease, turn(lease, work_items=[work("2:1")]), take=WorkTake("w1", limit=10, lock_ms=LOCK)
    )
    assert taken == []  # paused: nothing leased, not even inline
    await store.set_job_queue_paused("default", False)
    assert await keys(store, "default") == ["2:1"]


async def test_queue_depths_and_the_overview_count_every_queue(store: RedisStore) -> None:
    items = [work("1:1"), routed("1:2", "gpu"), routed("1:3", "gpu", session="s")]
    await schedule(store, "a", items, sessions_opened=["s"])
    depths = await store.queue_depths()
    assert (depths.work_items, depths.session_work_items) == (2, 1)
    parts = await partition_overview(store)
    ready = (sum(p.work_ready for p in parts), sum(p.session_work_ready for p in parts))
    assert ready == (2, 1)  # the dashboard's overview counts them too


async def test_a_commit_to_a_paused_queue_wakes_nobody(store: RedisStore) -> None:
    await store.set_job_queue_paused("gpu", True)
    await schedule(store, "a", [routed("1:1", "gpu")])
    before = store.calls["fetch_work_items:empty"]
    got = await store.fetch_work_items("w", limit=5, lock_ms=LOCK, wait_ms=400, queues=("gpu",))
    assert got == []
    # one try, the wait slept out, one last try: the commit did not ring the paused queue's
    # marker (a ring would have woken the wait for a third, empty try)
    assert store.calls["fetch_work_items:empty"] - before == 2 * store.partitions
    await store.set_job_queue_paused("gpu", False)
    await store.queue_status("gpu", wake=True)
    assert await keys(store, "gpu") == ["1:1"]


async def test_a_stale_id_in_a_ready_set_is_dropped_not_leased(store: RedisStore) -> None:
    """An id whose item is gone (left by an older worker's delete during an upgrade) is removed
    by the fetch that meets it; the items behind it are leased as usual."""
    await schedule(store, "a", [routed("1:1", "gpu"), routed("1:2", "gpu", session="s")])
    pk = store._parts[store._pk("a").index]
    ready, sready, _, _ = pk.wq_queue_keys("gpu")
    await store._redis.zadd(ready, {"a\nstale": -1})
    await store._redis.zadd(sready, {"a\nstale-s": -1})
    got = await store.fetch_work_items(
        "w", limit=5, lock_ms=LOCK, session_lock_ms=LOCK, queues=("gpu",)
    )
    assert sorted(x.activity_key for x in got) == ["1:1", "1:2"]
    assert await store._redis.zcard(ready) == 0 and await store._redis.zcard(sready) == 0
