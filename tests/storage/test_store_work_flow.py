"""Flow control by key of activity work items (``ctx.call_activity(..., limit=)``) in the
work-item scripts: a key's concurrency is held by leases (ack, hand-back, cancel and lease
expiry free a slot), a key over its rate is scheduled (not fetched, not spun on), keys take
turns at each fetch, and a commit never leases a keyed item inline. The limits are judged per
partition (an orchestration's items live in its instance's partition). Run on a real Redis and
fakeredis (and, with ``--cluster -m cluster``, on a Redis Cluster)."""

from __future__ import annotations

import time

import anyio
import pytest
from store_support import LOCK, SHORT, fetch, schedule, start, turn, work

from durable_redis.errors import InvalidIdError, ValidationError
from durable_redis.storage import NewWorkItem, RedisStore
from durable_redis.storage.base import WorkTake

pytestmark = pytest.mark.anyio


def keyed(
    key: str,
    flow_key: str,
    *,
    concurrency: int | None = None,
    rate: tuple[int, int] | None = None,
    burst: int = 1,
    queue: str | None = None,
    priority: int = 0,
) -> NewWorkItem:
    """A work item of flow key ``flow_key`` (limits as Limit.flow stores them)."""
    conc = "-" if concurrency is None else str(concurrency)
    count, per = ("-", "-") if rate is None else (str(rate[0]), str(rate[1]))
    return NewWorkItem(
        activity_key=key,
        data=f"task-{key}".encode(),
        queue=queue,
        priority=priority,
        flow_key=flow_key,
        flow=f"{conc} {count} {per} {burst}",
    )


async def take(store: RedisStore, limit: int = 100, lock_ms: int = LOCK, **kw: object) -> list:  # type: ignore[type-arg]
    return list(await store.fetch_work_items("w", limit=limit, lock_ms=lock_ms, **kw))  # type: ignore[arg-type]


async def test_a_key_never_runs_more_than_its_concurrency(store: RedisStore) -> None:
    items = [keyed(f"1:{i}", "t1", concurrency=2) for i in range(6)]
    await schedule(store, "a", [*items, keyed("1:9", "t2", concurrency=2), work("1:10")])
    got = await take(store)
    keys = sorted(x.activity_key for x in got)
    assert keys == ["1:0", "1:1", "1:10", "1:9"]  # 2 of t1, t2's one, the plain item
    assert await take(store) == []  # t1 is at its limit: nothing more, nothing requeued
    first = next(x for x in got if x.activity_key == "1:0")
    await store.ack_work_item(first, "done-0", b"ok")
    assert [x.activity_key for x in await take(store)] == ["1:2"]  # one slot freed, FIFO
    assert await take(store) == []


async def test_an_expired_lease_gives_its_slot_back_only_then(store: RedisStore) -> None:
    await schedule(store, "a", [keyed(f"1:{i}", "t1", concurrency=2) for i in range(4)])
    got = await take(store, lock_ms=SHORT)
    assert len(got) == 2
    assert await take(store) == []  # held while the leases last (a killed worker's too)
    deadline = time.monotonic() + 5
    again: list = []  # type: ignore[type-arg]
    while not again and time.monotonic() < deadline:
        await anyio.sleep(0.05)
        again = await take(store)
    # the two expired ones came back (FIFO: they are ahead), still at most 2 at once
    assert sorted(x.activity_key for x in again) == ["1:0", "1:1"]
    assert await take(store) == []


async def test_a_hand_back_and_a_cancel_free_the_slot(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(
        lease, turn(lease, work_items=[keyed(f"1:{i}", "t1", concurrency=1) for i in range(3)])
    )
    [first] = await take(store)
    await store.abandon_work_item(first, delay_ms=0)
    [again] = await take(store)
    assert again.activity_key == first.activity_key  # back first in its group, slot freed
    # the orchestration cancels the running item: its slot frees for the next one
    await store.enqueue_message("a", "poke", b"poke")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, cancelled_work=[again.activity_key]))
    assert [x.activity_key for x in await take(store)] == ["1:1"]


async def test_a_key_over_its_rate_is_scheduled_not_fetched(store: RedisStore) -> None:
    """rate 1 per 400 ms, burst 1: the second item is due ~400 ms after the first start; fetches
    before that find nothing (the group waits in the delayed set, it is not popped and put
    back), and the fetch after it gets it."""
    await schedule(store, "a", [keyed(f"1:{i}", "api", rate=(1, 400)) for i in range(3)])
    t0 = time.monotonic()
    assert [x.activity_key for x in await take(store)] == ["1:0"]
    pk = store._parts[store._pk("a").index]
    assert await store._redis.zscore(pk.wq_delayed, "\ndefault\napi") is not None
    assert await take(store) == []
    second: list = []  # type: ignore[type-arg]
    while not second and time.monotonic() - t0 < 5:
        await anyio.sleep(0.05)
        second = await take(store)
    assert [x.activity_key for x in second] == ["1:1"]
    assert time.monotonic() - t0 >= 0.3  # not before its time (the Redis clock's 400 ms)


async def test_keys_take_turns_within_one_fetch(store: RedisStore) -> None:
    """A key with many queued items does not hold back another key's single item: it comes in
    the very next fetch batch."""
    await schedule(store, "a", [keyed(f"1:{i}", "big") for i in range(40)])
    await store.enqueue_message("a", "poke", b"poke")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, work_items=[keyed("2:1", "small")]))
    got = [x.activity_key for x in await take(store, limit=4)]
    assert "2:1" in got
    assert len(got) == 4


async def test_groups_alone_fill_a_batch(store: RedisStore) -> None:
    await schedule(store, "a", [keyed(f"1:{i}", "only") for i in range(30)])
    assert len(await take(store, limit=25)) == 25  # one key: it takes what is left of the batch


async def test_a_commit_never_leases_a_keyed_item_inline(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    result = await store.commit_turn(
        lease,
        turn(lease, work_items=[keyed("1:1", "t1", concurrency=1)]),
        take=WorkTake(worker_id="w", limit=8, lock_ms=LOCK),
    )
    assert result == []
    assert [x.activity_key for x in await take(store)] == ["1:1"]


async def test_keyed_items_of_other_queues_and_priorities(store: RedisStore) -> None:
    await schedule(
        store,
        "a",
        [
            keyed("1:1", "t", concurrency=1, queue="gpu"),
            keyed("1:2", "t", concurrency=1, queue="gpu"),
            keyed("1:3", "t", concurrency=1),  # the same key on another queue: its own group
        ],
    )
    assert [x.activity_key for x in await take(store, queues=("gpu",))] == ["1:1"]
    assert [x.activity_key for x in await take(store)] == ["1:3"]
    assert await take(store, queues=("gpu", "default")) == []


async def test_deleting_the_instance_frees_its_slots(store: RedisStore) -> None:
    await schedule(store, "a", [keyed(f"1:{i}", "shared", concurrency=1) for i in range(2)])
    await schedule(store, "b", [keyed(f"1:{i}", "other", concurrency=1) for i in range(1)])
    got = await take(store)
    assert {x.instance_id for x in got} == {"a", "b"}
    pk = store._parts[store._pk("a").index]
    assert await store._redis.hlen(pk.wq_groups) > 0
    for iid in ("a", "b"):
        await store.delete_instance(iid, force=True)
    assert await take(store) == []
    assert await store._redis.hlen(pk.wq_groups) == 0  # idle groups leave nothing behind


async def test_bad_flow_is_refused_before_anything_is_written(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    bad = NewWorkItem(activity_key="1:1", data=b"x", flow_key="k", flow="zero")
    with pytest.raises(ValidationError):
        await store.commit_turn(lease, turn(lease, work_items=[bad]))
    nl = NewWorkItem(activity_key="1:1", data=b"x", flow_key="a\nb", flow="1 - - 1")
    with pytest.raises(InvalidIdError):
        await store.commit_turn(lease, turn(lease, work_items=[nl]))
    await store.commit_turn(lease, turn(lease))  # the lease still holds: nothing was written


async def test_queue_counts_include_keyed_and_delayed_activity_items(store: RedisStore) -> None:
    """queue_status and client.list_queues count activity work items: keyed ones waiting in
    their group (at their limit too), not the group's round-robin entry; delayed ones."""
    from durable_redis.client import Client

    delayed = NewWorkItem(activity_key="1:9", data=b"x", queue="gpu", visible_at_ms=1 << 42)
    await schedule(
        store,
        "a",
        [*(keyed(f"1:{i}", "t", concurrency=1, queue="gpu") for i in range(3)), delayed],
    )
    status = await store.queue_status("gpu")
    assert (status.work_ready, status.work_delayed, status.work_running) == (3, 1, 0)
    await take(store, queues=("gpu",))  # one runs, two wait at the key's limit
    status = await store.queue_status("gpu")
    assert (status.work_ready, status.work_delayed, status.work_running) == (2, 1, 1)
    client = Client(store)
    [gpu] = [q for q in await client.list_queues() if q.name == "gpu"]
    assert (gpu.ready, gpu.delayed, gpu.work_ready, gpu.work_delayed) == (0, 0, 2, 1)
    from durable_redis.storage.insights import partition_overview

    overview = await partition_overview(store)
    assert sum(p.work_ready for p in overview) == 2  # the keyed ones, not the group's entry


async def test_a_session_item_ignores_a_flow_key(store: RedisStore) -> None:
    """Session work runs on the session's owner: a flow key on it is ignored (core never
    sends one), so it holds no slot and its ack frees none."""
    item = NewWorkItem(activity_key="1:1", data=b"x", session_id="s1", flow_key="t", flow="1 - - 1")
    await schedule(store, "a", [item, keyed("1:2", "t", concurrency=1)], sessions_opened=["s1"])
    got = await take(store, session_lock_ms=LOCK)
    assert sorted(x.activity_key for x in got) == ["1:1", "1:2"]
    pk = store._parts[store._pk("a").index]
    [session_item] = [x for x in got if x.activity_key == "1:1"]
    assert await store._redis.hget(pk.wq_items, f"{session_item.item_id}|g") is None


async def test_a_keys_limit_is_judged_per_partition(store: RedisStore) -> None:
    """The documented guarantee, precisely: an instance's items live in its partition and each
    partition counts a key's slots itself, so with P = 2 and instances in both, a key with
    concurrency 1 runs once per partition (2 at once); instances in one partition share one."""
    from durable_redis.storage.keys import partition_of

    two = await store.fresh(2)  # type: ignore[attr-defined]
    ids = [f"i{n}" for n in range(50)]
    p0 = [i for i in ids if partition_of(i, 2) == 0][:2]
    p1 = [i for i in ids if partition_of(i, 2) == 1][:1]
    for iid in (*p0, *p1):
        await schedule(two, iid, [keyed(f"1:{k}", "t", concurrency=1) for k in range(2)])
    got = await take(two)
    assert sorted(partition_of(x.instance_id, 2) for x in got) == [0, 1]  # one per partition
    assert await take(two) == []


async def test_the_packed_route_of_a_keyed_item() -> None:
    """commit_turn's visible_at field: the flow (limits, then the key, which may hold ';')
    after the queue and priority; unkeyed items keep their older forms."""
    from durable_redis.storage.packing import work_route_arg

    assert work_route_arg(None, None, 0) == ""
    assert work_route_arg(5, "gpu", 2) == "5;gpu;2"
    assert work_route_arg(None, None, 0, "t;1", "5 - - 1") == ";default;;5 - - 1 t;1"
    with pytest.raises(ValidationError):
        work_route_arg(None, None, 0, "k", None)
