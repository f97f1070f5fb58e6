"""Explicit, instance-scoped sessions (duroxide's explicit-sessions provider tests, ported)."""

from __future__ import annotations

import anyio
import pytest
from store_support import LOCK, SHORT, fetch, schedule, start, turn, work

from durable_redis.errors import LeaseLostError
from durable_redis.ids import session_key
from durable_redis.storage import InstanceStatus, RedisStore, SessionRef

pytestmark = pytest.mark.anyio
S = 5_000  # session lease, ms


async def session_record(store: RedisStore, iid: str, sid: str) -> dict[str, str]:
    pk = store._pk(iid)
    sk = session_key(iid, sid)
    raw = await store._redis.hmget(pk.sess, [sk + "|o", sk + "|u", sk + "|l"])
    return {k: v.decode() for k, v in zip("oul", raw, strict=True) if v is not None}


async def test_plain_fetch_skips_session_work(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s"), work("1:2")], sessions_opened=["s"])
    got = await store.fetch_work_items("w", limit=5, lock_ms=LOCK)
    assert [i.activity_key for i in got] == ["1:2"]


async def test_session_fetch_returns_both_and_stores_session(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s"), work("1:2")], sessions_opened=["s"])
    got = await store.fetch_work_items("w", limit=5, lock_ms=LOCK, session_lock_ms=S)
    assert [(i.activity_key, i.session_id) for i in got] == [("1:1", "s"), ("1:2", None)]


async def test_fetch_claims_unclaimed_session(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s")], sessions_opened=["s"])
    assert (await session_record(store, "a", "s"))["o"] == ""  # commit created it, unowned
    now = await store.server_time_ms()
    await store.fetch_work_items("w1", limit=1, lock_ms=LOCK, session_lock_ms=S)
    rec = await session_record(store, "a", "s")
    assert rec["o"] == "w1" and int(rec["u"]) >= now + S - 50


async def test_skip_other_workers_session_and_take_item_behind_it(store: RedisStore) -> None:
    items = [work("1:1", session="s"), work("1:2", session="s"), work("1:3")]
    await schedule(store, "a", items, sessions_opened=["s"])
    [mine] = await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)
    assert mine.activity_key == "1:1"
    got = await store.fetch_work_items("B", limit=5, lock_ms=LOCK, session_lock_ms=S)
    assert [i.activity_key for i in got] == ["1:3"]  # not blocked by A's session
    [own] = await store.fetch_work_items("A", limit=5, lock_ms=LOCK, session_lock_ms=S)
    assert own.activity_key == "1:2"  # affinity


async def test_owned_fetch_extends_session_lease(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s"), work("1:2", session="s")], ["s"])
    await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=200)
    before = int((await session_record(store, "a", "s"))["u"])
    await anyio.sleep(0.05)
    await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=200)
    assert int((await session_record(store, "a", "s"))["u"]) > before


async def test_reclaim_after_session_lease_expiry(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s"), work("1:2", session="s")], ["s"])
    await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=SHORT)
    assert await store.fetch_work_items("B", limit=5, lock_ms=LOCK, session_lock_ms=S) == []
    await anyio.sleep(SHORT / 1000 + 0.05)
    [got] = await store.fetch_work_items("B", limit=5, lock_ms=LOCK, session_lock_ms=S)
    assert got.activity_key == "1:2"
    assert (await session_record(store, "a", "s"))["o"] == "B"


async def test_claim_new_sessions_false(store: RedisStore) -> None:
    items = [work("1:1", session="s1"), work("1:2", session="s2"), work("1:3")]
    await schedule(store, "a", items, sessions_opened=["s1", "s2"])
    await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)  # owns s1
    await store.enqueue_message("a", "tick", b"x")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, work_items=[work("2:1", session="s1")]))
    got = await store.fetch_work_items(
        "A", limit=5, lock_ms=LOCK, session_lock_ms=S, claim_new_sessions=False
    )
    assert [i.activity_key for i in got] == ["1:3", "2:1"]  # own session + plain, not s2


async def test_renew_sessions(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s")], sessions_opened=["s"])
    await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=200)
    ref = SessionRef("a", "s")
    before = int((await session_record(store, "a", "s"))["u"])
    await anyio.sleep(0.05)
    assert await store.renew_sessions("A", [ref], 1_000) == []
    assert int((await session_record(store, "a", "s"))["u"]) > before
    assert await store.renew_sessions("B", [ref], 1_000) == [ref]  # another worker's
    assert await store.renew_sessions("A", [SessionRef("a", "nope")], 1_000) == [
        SessionRef("a", "nope")
    ]


async def test_release_makes_claimable_at_once(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s"), work("1:2", session="s")], ["s"])
    await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)
    await store.release_sessions("B", [SessionRef("a", "s")])  # not B's: no-op
    assert await store.fetch_work_items("B", limit=5, lock_ms=LOCK, session_lock_ms=S) == []
    await store.release_sessions("A", [SessionRef("a", "s")])
    assert (await session_record(store, "a", "s"))["o"] == ""
    [got] = await store.fetch_work_items("B", limit=5, lock_ms=LOCK, session_lock_ms=S)
    assert got.activity_key == "1:2"


async def test_close_purges_queued_work_steals_leases_and_removes_record(
    store: RedisStore,
) -> None:
    items = [work("1:1", session="s"), work("1:2", session="s"), work("1:3", session="t")]
    await schedule(store, "a", items, sessions_opened=["s", "t"])
    [inflight] = await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)
    await store.enqueue_message("a", "tick", b"x")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, sessions_closed=["s"]))
    assert await session_record(store, "a", "s") == {}
    assert await store.renew_work_items([inflight], LOCK) == [inflight.item_id]
    with pytest.raises(LeaseLostError):
        await store.ack_work_item(inflight, "late", b"r")
    assert await store.renew_sessions("A", [SessionRef("a", "s")], S) == [SessionRef("a", "s")]
    got = await store.fetch_work_items("B", limit=5, lock_ms=LOCK, session_lock_ms=S)
    assert [i.activity_key for i in got] == ["1:3"]


async def test_terminal_status_purges_every_session(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s"), work("1:2", session="t")], ["s", "t"])
    [inflight] = await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)
    await store.enqueue_message("a", "tick", b"x")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, status=InstanceStatus.COMPLETED, output=b"o"))
    assert await session_record(store, "a", "s") == {}
    assert await session_record(store, "a", "t") == {}
    assert await store.renew_work_items([inflight], LOCK) == [inflight.item_id]
    assert await store.fetch_work_items("B", limit=5, lock_ms=LOCK, session_lock_ms=S) == []


async def test_continue_as_new_keeps_sessions(store: RedisStore) -> None:
    await schedule(store, "a", [], sessions_opened=["s"])
    await store.enqueue_message("a", "tick", b"x")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, status=InstanceStatus.CONTINUED_AS_NEW))
    assert (await session_record(store, "a", "s"))["o"] == ""


async def test_activity_renewal_extends_session_and_ack_refreshes_activity(
    store: RedisStore,
) -> None:
    await schedule(store, "a", [work("1:1", session="s")], sessions_opened=["s"])
    [item] = await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=200)
    rec = await session_record(store, "a", "s")
    await anyio.sleep(0.05)
    assert await store.renew_work_items([item], LOCK, session_lock_ms=1_000) == []
    after = await session_record(store, "a", "s")
    assert int(after["u"]) > int(rec["u"]) and int(after["l"]) > int(rec["l"])
    await anyio.sleep(0.25)  # past the session's original deadline: still A's
    assert await store.fetch_work_items("B", limit=5, lock_ms=LOCK, session_lock_ms=S) == []
    await anyio.sleep(0.02)
    await store.ack_work_item(item, "done", b"r")
    assert int((await session_record(store, "a", "s"))["l"]) > int(after["l"])


async def test_session_fifo_no_starvation(store: RedisStore) -> None:
    items = [work("1:1"), work("1:2", session="s"), work("1:3")]
    await schedule(store, "a", items, sessions_opened=["s"])
    got = []
    for _ in range(3):
        [i] = await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)
        got.append(i.activity_key)
    assert got == ["1:1", "1:2", "1:3"]


async def test_abandoned_session_item_stays_with_session(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s")], sessions_opened=["s"])
    [item] = await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)
    await store.abandon_work_item(item)
    assert await store.fetch_work_items("B", limit=1, lock_ms=LOCK, session_lock_ms=S) == []
    [again] = await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)
    assert again.attempt == 2


async def test_claim_race_has_one_winner(store: RedisStore) -> None:
    await schedule(store, "a", [work(f"1:{i}", session="s") for i in range(4)], ["s"])
    stores = [store] + [await store.twin() for _ in range(5)]  # type: ignore[attr-defined]
    results: dict[str, list[str]] = {}

    async def grab(s: RedisStore, worker: str) -> None:
        got = await s.fetch_work_items(worker, limit=4, lock_ms=LOCK, session_lock_ms=S)
        results[worker] = [i.activity_key for i in got]

    async with anyio.create_task_group() as tg:
        for n, s in enumerate(stores):
            tg.start_soon(grab, s, f"w{n}")
    winners = [w for w, keys in results.items() if keys]
    assert len(winners) == 1
    assert sorted(results[winners[0]]) == [f"1:{i}" for i in range(4)]


async def test_reopen_in_same_turn_after_close(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s")], sessions_opened=["s"])
    await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)
    await store.enqueue_message("a", "tick", b"x")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, sessions_closed=["s"], sessions_opened=["s"]))
    assert (await session_record(store, "a", "s"))["o"] == ""  # reopened, unowned


async def test_start_helper_smoke(store: RedisStore) -> None:
    await start(store, "x")
    assert (await fetch(store)).instance_id == "x"


async def test_checked_sessions_gone_free_claims_at_the_limit(store: RedisStore) -> None:
    """A worker at its session limit names its sessions: one closed frees one new claim."""
    items = [work("1:1", session="s1"), work("1:2", session="s2"), work("1:3", session="s3")]
    await schedule(store, "a", items, sessions_opened=["s1", "s2", "s3"])
    [mine] = await store.fetch_work_items("A", limit=1, lock_ms=LOCK, session_lock_ms=S)
    s1 = SessionRef("a", "s1")
    assert mine.session_id == "s1"
    got = await store.fetch_work_items(
        "A", limit=5, lock_ms=LOCK, session_lock_ms=S, claim_new_sessions=False, check_sessions=[s1]
    )
    assert got == [] and got.sessions_lost == []  # still ours: nothing new claimed
    await store.ack_work_item(mine, "done-1", b"r")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, sessions_closed=["s1"]))
    got = await store.fetch_work_items(
        "A", limit=5, lock_ms=LOCK, session_lock_ms=S, claim_new_sessions=False, check_sessions=[s1]
    )
    assert [i.session_id for i in got] == ["s2"]  # exactly one slot freed: s3 stays
    assert got.sessions_lost == [s1] and got.sessions_lost.closed == {s1}
    lost = await store.renew_sessions("A", [s1, SessionRef("a", "s2")], S)
    assert lost == [s1] and lost.closed == {s1}
    lost = await store.renew_sessions("B", [SessionRef("a", "s2")], S)
    assert lost == [SessionRef("a", "s2")] and lost.closed == frozenset()  # taken, not closed
