"""Orchestration queue: atomicity, creation, instance locking, lock expiry and renewal, queue
semantics and FIFO, multi-execution (continue-as-new), attempt counts (duroxide validation
groups, ported)."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from durable_redis.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidIdError,
    LeaseLostError,
)
from durable_redis.storage import (
    ExistingInstancePolicy,
    InstanceCreate,
    InstanceStatus,
    OutboundMessage,
    RedisStore,
)
from durable_redis.storage.keys import partition_of
from tests.harness import StoreHarness
from tests.storage.store_support import (
    LOCK,
    SHORT,
    fetch,
    schedule,
    snapshot,
    start,
    timer,
    turn,
    work,
)

pytestmark = pytest.mark.anyio


# -- atomicity --------------------------------------------------------------------------------


async def test_commit_applies_every_part(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    now = await store.server_time_ms()
    await store.commit_turn(
        lease,
        turn(
            lease,
            events=[b"e1", b"e2"],
            custom_status=b"cs",
            set_custom_status=True,
            work_items=[work("1:1")],
            messages=[timer("a", "t1", now + 60_000)],
            sessions_opened=["s"],
        ),
    )
    info = await store.get_instance("a")
    assert info is not None
    assert info.status is InstanceStatus.RUNNING and info.execution_id == 1
    assert info.custom_status == b"cs"
    assert await store.read_history("a") == [b"e1", b"e2"]
    depths = await store.queue_depths()
    assert depths.work_items == 1 and depths.timers == 1
    assert await store.fetch_orchestration(lock_ms=LOCK) is None  # timer not due, start consumed


async def test_stale_history_length_is_refused_and_changes_nothing(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    before = await snapshot(store)
    bad = dataclasses.replace(turn(lease, events=[b"x"]), expected_history_len=3)
    with pytest.raises(LeaseLostError):
        await store.commit_turn(lease, bad)
    assert await snapshot(store) == before
    await store.commit_turn(lease, turn(lease, events=[b"ok"]))
    assert await store.read_history("a") == [b"ok"]


async def test_commit_after_lock_expiry_is_refused(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store, lock_ms=SHORT)
    await anyio.sleep(SHORT / 1000 + 0.05)
    with pytest.raises(LeaseLostError):
        await store.commit_turn(lease, turn(lease))
    assert await store.read_history("a") == []


async def test_commit_twice_is_a_no_op(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    commit = turn(lease, events=[b"e1"], work_items=[work("1:1")])
    await store.commit_turn(lease, commit)
    await store.commit_turn(lease, commit)  # a client retry after a lost reply
    assert await store.read_history("a") == [b"e1"]
    assert (await store.queue_depths()).work_items == 1


# -- instance creation ------------------------------------------------------------------------


async def test_create_fetch_reports_metadata(store: RedisStore) -> None:
    await start(store, "a", name="flow", version="2.0.0")
    lease = await fetch(store)
    assert lease.execution_id == 0 and lease.history == []
    assert lease.instance is not None
    assert (lease.instance.name, lease.instance.version) == ("flow", "2.0.0")
    assert lease.instance.status is InstanceStatus.PENDING and lease.instance.input == b"in"
    assert [m.message_id for m in lease.messages] == ["start-a"]


async def test_create_policies(store: RedisStore) -> None:
    await start(store, "a")
    create = InstanceCreate(name="wf")
    with pytest.raises(InstanceExistsError):
        await store.create_instance("a", create, "other", b"x")
    ok = await store.create_instance(
        "a", create, "other", b"x", policy=ExistingInstancePolicy.IGNORE
    )
    assert ok is False
    with pytest.raises(InstanceExistsError):
        await store.create_instance(
            "a", create, "other", b"x", policy=ExistingInstancePolicy.TERMINATE_IF_DONE
        )
    # the same create again (a client retry) is not an error
    assert await store.create_instance("a", create, "start-a", b"start")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, status=InstanceStatus.COMPLETED, output=b"r"))
    assert await store.create_instance(
        "a",
        InstanceCreate(name="wf2"),
        "again",
        b"x",
        policy=ExistingInstancePolicy.TERMINATE_IF_DONE,
    )
    info = await store.get_instance("a")
    assert info is not None and info.name == "wf2" and info.status is InstanceStatus.PENDING
    assert await store.read_history("a") == []


async def test_enqueue_rules(store: RedisStore) -> None:
    with pytest.raises(InstanceNotFoundError):
        await store.enqueue_message("nope", "m", b"x")
    with pytest.raises(InvalidIdError):
        await store.enqueue_message("bad\nid", "m", b"x")
    await start(store, "a")
    assert await store.enqueue_message("a", "m1", b"x")
    assert not await store.enqueue_message("a", "m1", b"x")  # queued already
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease))
    assert not await store.enqueue_message("a", "m1", b"x")  # consumed by the last turn


# -- instance locking ------------------------------------------------------------------------


async def test_exclusive_lock_and_cross_instance_isolation(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    assert await store.fetch_orchestration(lock_ms=LOCK) is None
    await store.enqueue_message("a", "m2", b"x")
    assert await store.fetch_orchestration(lock_ms=LOCK) is None  # locked: not fetchable
    await start(store, "b")
    other = await fetch(store)
    assert other.instance_id == "b"
    await store.commit_turn(lease, turn(lease))
    again = await fetch(store)  # the message that arrived during the lock survived the commit
    assert again.instance_id == "a" and [m.message_id for m in again.messages] == ["m2"]


async def test_lock_tokens_are_unique(store: RedisStore) -> None:
    await start(store, "a")
    tokens = set()
    for _ in range(5):
        lease = await fetch(store)
        tokens.add(lease.token)
        await store.abandon_orchestration(lease)
    assert len(tokens) == 5


async def test_invalid_token_is_rejected(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    forged = dataclasses.replace(lease, token="1:bogus")
    with pytest.raises(LeaseLostError):
        await store.commit_turn(forged, turn(forged))
    with pytest.raises(LeaseLostError):
        await store.abandon_orchestration(forged)
    with pytest.raises(LeaseLostError):
        await store.renew_orchestration(forged, LOCK)
    await store.commit_turn(lease, turn(lease))


async def test_ack_only_consumes_tagged_messages(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.enqueue_message("a", "m2", b"2")
    await store.enqueue_message("a", "m3", b"3")
    await store.commit_turn(lease, turn(lease))
    nxt = await fetch(store)
    assert [m.message_id for m in nxt.messages] == ["m2", "m3"]
    assert [m.data for m in nxt.messages] == [b"2", b"3"]


# -- lock expiry and renewal -----------------------------------------------------------------


async def test_lock_expires_and_is_refetched_with_new_token(store: RedisStore) -> None:
    await start(store, "a")
    first = await fetch(store, lock_ms=SHORT)
    assert await store.fetch_orchestration(lock_ms=LOCK) is None
    await anyio.sleep(SHORT / 1000 + 0.05)
    second = await fetch(store)
    assert second.instance_id == "a" and second.token != first.token
    assert second.messages[0].attempt == 2
    with pytest.raises(LeaseLostError):
        await store.commit_turn(first, turn(first))
    await store.commit_turn(second, turn(second))


async def test_abandon_releases_immediately(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.abandon_orchestration(lease)
    assert (await fetch(store)).instance_id == "a"


async def test_abandon_with_delay(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.abandon_orchestration(lease, delay_ms=200)
    assert await store.fetch_orchestration(lock_ms=LOCK) is None
    await anyio.sleep(0.25)
    assert (await fetch(store)).instance_id == "a"


async def test_renewal_extends_and_fails_after_expiry_or_commit(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store, lock_ms=200)
    await anyio.sleep(0.1)
    until = await store.renew_orchestration(lease, 400)
    assert until > lease.lease_until_ms
    await anyio.sleep(0.15)  # past the original deadline
    assert await store.fetch_orchestration(lock_ms=LOCK) is None
    await store.commit_turn(lease, turn(lease))
    with pytest.raises(LeaseLostError):
        await store.renew_orchestration(lease, 400)
    await start(store, "b")
    short = await fetch(store, lock_ms=SHORT)
    await anyio.sleep(SHORT / 1000 + 0.05)
    with pytest.raises(LeaseLostError):
        await store.renew_orchestration(short, 400)


# -- queue semantics and FIFO ---------------------------------------------------------------


async def test_instances_fetched_fifo(store: RedisStore) -> None:
    for i in range(5):
        await start(store, f"i{i}")
    order = []
    for _ in range(5):
        lease = await fetch(store)
        order.append(lease.instance_id)
        await store.commit_turn(lease, turn(lease))
    expected = [f"i{i}" for i in range(5)]
    if store.partitions > 1:  # FIFO holds within a partition (P > 1: round robin across them)
        part = {i: partition_of(i, store.partitions) for i in expected}
        for p in set(part.values()):
            assert [i for i in order if part[i] == p] == [i for i in expected if part[i] == p]
        return
    assert order == expected


async def test_timer_becomes_visible_when_due(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    due = await store.server_time_ms() + 200
    await store.commit_turn(lease, turn(lease, messages=[timer("a", "t", due)]))
    assert await store.fetch_orchestration(lock_ms=LOCK) is None
    await anyio.sleep(0.25)
    fired = await fetch(store)
    assert [m.message_id for m in fired.messages] == ["t"]
    assert await store.server_time_ms() >= due


async def test_delayed_enqueue(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease))
    await store.enqueue_message(
        "a", "later", b"x", visible_at_ms=await store.server_time_ms() + 150
    )
    assert await store.fetch_orchestration(lock_ms=LOCK) is None
    await anyio.sleep(0.2)
    assert [m.message_id for m in (await fetch(store)).messages] == ["later"]


async def test_message_to_other_instance_and_child_creation(store: RedisStore) -> None:
    await start(store, "parent")
    lease = await fetch(store)
    child_start = OutboundMessage(
        instance_id="child",
        message_id="child-start",
        data=b"go",
        create=InstanceCreate(
            name="sub", version="1.5.0", parent_instance_id="parent", input=b"ci"
        ),
    )
    await store.commit_turn(lease, turn(lease, messages=[child_start]))
    info = await store.get_instance("child")
    assert info is not None and info.parent_instance_id == "parent" and info.version == "1.5.0"
    assert await store.list_children("parent") == ["child"]
    child = await fetch(store)
    assert child.instance_id == "child" and child.messages[0].data == b"go"
    await store.commit_turn(child, turn(child, messages=[OutboundMessage("parent", "res", b"r")]))
    back = await fetch(store)
    assert back.instance_id == "parent" and back.messages[0].message_id == "res"


async def test_message_to_missing_instance_is_dropped(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, messages=[OutboundMessage("ghost", "m", b"x")]))
    assert await store.get_instance("ghost") is None
    assert await store.fetch_orchestration(lock_ms=LOCK) is None


# -- multi-execution / continue-as-new ------------------------------------------------------


async def test_continue_as_new_keeps_executions_apart(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(
        lease,
        turn(
            lease,
            events=[b"1a", b"1b"],
            status=InstanceStatus.CONTINUED_AS_NEW,
            messages=[OutboundMessage("a", "can-1", b"restart")],
        ),
    )
    lease2 = await fetch(store)
    assert lease2.execution_id == 1 and lease2.history == [b"1a", b"1b"]
    await store.commit_turn(
        lease2, turn(lease2, execution_id=2, events=[b"2a"], input=b"new-input")
    )
    info = await store.get_instance("a")
    assert info is not None and info.execution_id == 2 and info.input == b"new-input"
    await store.enqueue_message("a", "ev", b"x")
    lease3 = await fetch(store)
    assert lease3.execution_id == 2 and lease3.history == [b"2a"]
    assert await store.read_history("a", 1) == [b"1a", b"1b"]
    assert await store.read_history("a") == [b"2a"]
    with pytest.raises(LeaseLostError):  # never back to an older execution
        await store.commit_turn(lease3, turn(lease3, execution_id=1))


# -- poison: attempt counts ----------------------------------------------------------------


async def test_attempt_counts(store: RedisStore) -> None:
    await start(store, "a")
    attempts = []
    for _ in range(3):
        lease = await fetch(store)
        attempts.append(lease.attempt)
        await store.abandon_orchestration(lease)
    assert attempts == [1, 2, 3]
    lease = await fetch(store)
    assert lease.attempt == 4
    await store.abandon_orchestration(lease, count_attempt=False)
    assert (await fetch(store)).attempt == 4


async def test_attempt_never_negative_and_per_message(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store)
    for _ in range(3):
        await store.abandon_orchestration(lease, count_attempt=False)
        lease = await fetch(store)
    assert lease.attempt == 1
    await store.abandon_orchestration(lease)
    await store.abandon_orchestration(await fetch(store))
    await store.enqueue_message("a", "new", b"x")
    batch = await fetch(store)
    by_id = {m.message_id: m.attempt for m in batch.messages}
    assert by_id == {"start-a": 3, "new": 1} and batch.attempt == 3


async def test_attempt_counts_on_expiry(store: RedisStore) -> None:
    await schedule(store, "a", [])
    await store.enqueue_message("a", "m", b"x")
    first = await fetch(store, lock_ms=SHORT)
    await anyio.sleep(SHORT / 1000 + 0.05)
    assert (await fetch(store)).attempt == first.attempt + 1


async def test_fetch_reads_history_in_the_lock_call_and_falls_back_on_a_wrong_guess(
    store: RedisStore, store_harness: StoreHarness
) -> None:
    """lock_messages returns the history when the store guesses the execution id right (one
    round trip); a wrong guess (another client continued the instance) falls back to LRANGE."""
    lranges: list[str] = []
    original = store._r.lrange

    async def counting(key: str, *args: object) -> object:
        lranges.append(key)
        return await original(key, *args)

    store._r.lrange = counting
    other = await store_harness.twin()
    await start(store, "a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, events=[b"1a"]))
    await store.enqueue_message("a", "m1", b"x")
    lease = await fetch(store)
    assert lease.history == [b"1a"] and lranges == []  # guessed execution 1: no LRANGE
    await store.commit_turn(
        lease,
        turn(
            lease,
            events=[b"1b"],
            status=InstanceStatus.CONTINUED_AS_NEW,
            messages=[OutboundMessage("a", "can-1", b"restart")],
        ),
    )
    # the other client runs execution 2; this store still guesses 1
    lease = await fetch(other)
    await other.commit_turn(lease, turn(lease, execution_id=2, events=[b"2a"]))
    await store.enqueue_message("a", "m2", b"x")
    lease = await fetch(store)
    assert lease.execution_id == 2 and lease.history == [b"2a"] and len(lranges) == 1
    await store.commit_turn(lease, turn(lease, events=[b"2b"]))
    await store.enqueue_message("a", "m3", b"x")
    lease = await fetch(store)
    assert lease.history == [b"2a", b"2b"] and len(lranges) == 1  # now guessed 2
