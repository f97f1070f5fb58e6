"""Management and deletion: instance info, history, listing, children, tree delete, prune,
queue depths, counts by status, retention janitor (duroxide validation groups, ported)."""

from __future__ import annotations

import anyio
import pytest

from durable_redis.errors import (
    InstanceNotFoundError,
    InstanceRunningError,
    InstanceTerminalError,
    LeaseLostError,
)
from durable_redis.storage import InstanceCreate, InstanceStatus, OutboundMessage, RedisStore
from tests.storage.store_support import LOCK, fetch, schedule, start, turn, work

pytestmark = pytest.mark.anyio


async def finish(store: RedisStore, iid: str, status: InstanceStatus) -> None:
    await start(store, iid)
    others = []
    lease = await fetch(store)
    while lease.instance_id != iid:
        others.append(lease)
        lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, status=status, output=b"result", error=None))
    for other in others:
        await store.abandon_orchestration(other, count_attempt=False)


async def spawn_child(store: RedisStore, parent: str, child: str) -> None:
    """Give ``parent`` (already created, not locked) a child through a committed turn."""
    await store.enqueue_message(parent, f"spawn-{child}", b"x")
    lease = await fetch(store)
    assert lease.instance_id == parent
    create = InstanceCreate(name="child", parent_instance_id=parent)
    msg = OutboundMessage(child, f"start-{child}", b"go", create=create)
    await store.commit_turn(lease, turn(lease, messages=[msg]))


async def test_get_instance_info_and_history(store: RedisStore) -> None:
    assert await store.get_instance("nope") is None
    assert await store.read_history("nope") == []
    await finish(store, "a", InstanceStatus.COMPLETED)
    info = await store.get_instance("a")
    assert info is not None
    assert info.status is InstanceStatus.COMPLETED and info.output == b"result"
    assert info.completed_at_ms is not None and info.completed_at_ms >= info.created_at_ms
    assert await store.read_history("a") == [b"event"]
    assert await store.read_history("a", 1) == [b"event"]
    assert await store.read_history("a", 7) == []


async def test_list_instances_filters_and_pages(store: RedisStore) -> None:
    for i in range(7):
        await start(store, f"r{i}", name="even" if i % 2 == 0 else "odd")
        await anyio.sleep(0.002)
    mid = await store.server_time_ms()
    await finish(store, "done", InstanceStatus.COMPLETED)
    page = await store.list_instances(limit=3)
    seen = [i.instance_id for i in page.instances]
    while page.next_cursor:
        page = await store.list_instances(limit=3, cursor=page.next_cursor)
        seen += [i.instance_id for i in page.instances]
    assert seen == [f"r{i}" for i in range(7)] + ["done"]
    completed = await store.list_instances(status=InstanceStatus.COMPLETED)
    assert [i.instance_id for i in completed.instances] == ["done"]
    odd = await store.list_instances(name="odd", limit=2)
    odd_ids = [i.instance_id for i in odd.instances]
    assert odd_ids == ["r1", "r3"] and odd.next_cursor
    rest = await store.list_instances(name="odd", limit=5, cursor=odd.next_cursor)
    assert [i.instance_id for i in rest.instances] == ["r5"]
    after = await store.list_instances(created_after_ms=mid)
    assert [i.instance_id for i in after.instances] == ["done"]
    before = await store.list_instances(created_before_ms=mid, limit=100)
    assert len(before.instances) == 7


async def test_list_instances_newest_first(store: RedisStore) -> None:
    for i in range(7):
        await start(store, f"r{i}", name="even" if i % 2 == 0 else "odd")
        await anyio.sleep(0.002)
    mid = await store.server_time_ms()
    await anyio.sleep(0.002)
    await start(store, "late", name="even")

    def ids(page: object) -> list[str]:
        return [i.instance_id for i in page.instances]  # type: ignore[attr-defined]

    page = await store.list_instances(limit=3, newest_first=True)
    seen = ids(page)
    while page.next_cursor:
        page = await store.list_instances(limit=3, cursor=page.next_cursor, newest_first=True)
        seen += ids(page)
    assert seen == ["late"] + [f"r{i}" for i in reversed(range(7))]
    even = await store.list_instances(name="even", limit=2, newest_first=True)
    assert ids(even) == ["late", "r6"] and even.next_cursor
    rest = await store.list_instances(
        name="even", limit=5, cursor=even.next_cursor, newest_first=True
    )
    assert ids(rest) == ["r4", "r2", "r0"]
    since = await store.list_instances(created_after_ms=mid, newest_first=True)
    assert ids(since) == ["late"]
    before = await store.list_instances(created_before_ms=mid, limit=2, newest_first=True)
    assert ids(before) == ["r6", "r5"]
    before = await store.list_instances(
        created_before_ms=mid, cursor=before.next_cursor, newest_first=True
    )
    assert ids(before) == ["r4", "r3", "r2", "r1", "r0"]


@pytest.mark.parametrize(
    "status", [InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.CANCELLED]
)
async def test_no_message_for_an_ended_instance(store: RedisStore, status: InstanceStatus) -> None:
    await finish(store, "x", status)
    with pytest.raises(InstanceTerminalError) as caught:
        await store.enqueue_message("x", "late", b"m")
    assert caught.value.status == status.value and caught.value.instance_id == "x"
    assert f"({status.value})" in str(caught.value)
    assert (await store.queue_depths()).orchestration_messages == 0  # nothing was written


async def test_counts_and_queue_depths(store: RedisStore) -> None:
    await finish(store, "c", InstanceStatus.COMPLETED)
    await finish(store, "f", InstanceStatus.FAILED)
    await schedule(store, "r", [work("1:1"), work("1:2", session="s")], ["s"])
    await start(store, "p")
    counts = await store.count_by_status()
    assert counts[InstanceStatus.COMPLETED] == 1 and counts[InstanceStatus.FAILED] == 1
    assert counts[InstanceStatus.RUNNING] == 1 and counts[InstanceStatus.PENDING] == 1
    depths = await store.queue_depths()
    assert depths.orchestration_messages == 1  # p's start
    assert depths.work_items == 1 and depths.session_work_items == 1


async def test_delete_terminal_running_and_missing(store: RedisStore) -> None:
    await finish(store, "c", InstanceStatus.COMPLETED)
    await schedule(store, "r", [work("1:1")])
    with pytest.raises(InstanceNotFoundError):
        await store.delete_instance("nope")
    with pytest.raises(InstanceRunningError):
        await store.delete_instance("r")
    assert await store.delete_instance("c") == 1
    assert await store.delete_instance("r", force=True) == 1
    assert await store.get_instance("c") is None and await store.get_instance("r") is None
    depths = await store.queue_depths()
    assert depths.work_items == 0 and depths.orchestration_messages == 0
    assert sum((await store.count_by_status()).values()) == 0
    await start(store, "r")  # the id is reusable
    assert (await fetch(store)).instance_id == "r"


async def test_delete_tree_cascades(store: RedisStore) -> None:
    await start(store, "root")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease))
    await spawn_child(store, "root", "kid")
    child_lease = await fetch(store)
    await store.commit_turn(child_lease, turn(child_lease))
    await spawn_child(store, "kid", "grandkid")
    assert await store.list_children("root") == ["kid"]
    assert await store.list_children("kid") == ["grandkid"]
    with pytest.raises(InstanceRunningError):
        await store.delete_instance("root")
    assert await store.delete_instance("root", force=True) == 3
    for iid in ("root", "kid", "grandkid"):
        assert await store.get_instance(iid) is None


async def test_force_delete_fences_inflight_commit(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.delete_instance("a", force=True)
    with pytest.raises(LeaseLostError):
        await store.commit_turn(lease, turn(lease))
    assert await store.get_instance("a") is None


async def test_prune_executions(store: RedisStore) -> None:
    await start(store, "a")
    for execution in range(1, 4):
        lease = await fetch(store)
        status = InstanceStatus.CONTINUED_AS_NEW if execution < 3 else InstanceStatus.RUNNING
        await store.commit_turn(
            lease,
            turn(
                lease,
                execution_id=execution,
                events=[f"e{execution}".encode()],
                status=status,
                messages=[OutboundMessage("a", f"can-{execution}", b"x")] if execution < 3 else [],
            ),
        )
    assert await store.prune_executions("a", keep_last=1) == 2
    assert await store.read_history("a", 1) == [] and await store.read_history("a", 2) == []
    assert await store.read_history("a") == [b"e3"]
    assert await store.prune_executions("a") == 0
    with pytest.raises(InstanceNotFoundError):
        await store.prune_executions("nope")


async def test_janitor_removes_after_retention(store: RedisStore) -> None:
    await finish(store, "old", InstanceStatus.COMPLETED)
    await finish(store, "failed", InstanceStatus.FAILED)
    await schedule(store, "live", [work("1:1")])
    assert await store.run_janitor(retention_ms=60_000) == 0
    await anyio.sleep(0.12)
    assert await store.run_janitor(retention_ms=100) == 2
    assert await store.get_instance("old") is None and await store.get_instance("failed") is None
    assert await store.get_instance("live") is not None
    assert await store.run_janitor(retention_ms=0) == 0
    # nothing of the removed instances is left in the namespace
    leftovers = [
        k async for k in store._redis.scan_iter(match=f"dr:{{{store.namespace}:p0}}:*old*")
    ]
    assert leftovers == []


async def test_fetch_lease_reports_instance(store: RedisStore) -> None:
    await start(store, "a")
    lease = await store.fetch_orchestration(lock_ms=LOCK)
    assert lease is not None and lease.instance is not None
    assert lease.instance.instance_id == "a"
