"""The explicit-sessions matrix, end to end: real Redis, two or more real worker processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from e2e_helpers import WorkerPool, eventually, markers

from durable_redis.client import Client
from durable_redis.errors import OrchestrationCancelledError, OrchestrationFailedError
from durable_redis.ids import session_key
from durable_redis.storage.base import InstanceStatus, SessionRef

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(90)]


def pids(results: list[dict[str, Any]]) -> set[int]:
    return {r["pid"] for r in results}


async def status_value(client: Client, iid: str) -> Any:
    state = await client.get_status(iid)
    return None if state is None else state.custom_status


async def session_fields(client: Client, url: str, iid: str) -> list[str]:
    """The session records of ``iid`` still in Redis."""
    store: Any = client.store  # its own client: standalone or cluster, the iid's partition
    keys = await store._r.hkeys(store._pk(iid).sess)
    prefix = f"{iid}\n"
    # Fields are "<iid>\n<sid>|<attribute>": one session has several.
    return sorted(
        {k.decode()[len(prefix) :].rsplit("|", 1)[0] for k in keys if k.decode().startswith(prefix)}
    )


async def namespace_keys(client: Client, url: str) -> set[str]:
    store: Any = client.store  # a cluster client scans every primary
    pattern = f"dr:{{{client.store.namespace}*"
    return {k.decode() async for k in store._r.scan_iter(match=pattern)}


# -- lifecycle ----
async def test_open_open_with_id_and_close_are_idempotent(
    workers: WorkerPool, client: Client, e2e_redis_url: str
) -> None:
    workers.start()
    workers.start()
    iid = await client.start("session_lifecycle")
    out = await client.wait_for_completion(iid, timeout=30)
    assert out["s1"] != out["s1b"]
    assert out["s2"] == out["s2b"] == "fixed"
    assert out["r1"]["session"] == out["s1"] and out["r2"]["session"] == "fixed"
    assert out["plain"]["session"] is None
    history = await client.get_history(iid)
    opened = [e.session_id for e in history if type(e).__name__ == "SessionOpened"]
    closed = [e.session_id for e in history if type(e).__name__ == "SessionClosed"]
    assert opened.count("fixed") == 1 and out["s1"] in opened
    assert out["s1"] in closed
    assert await session_fields(client, e2e_redis_url, iid) == []


async def test_affinity_across_many_turns(workers: WorkerPool, client: Client) -> None:
    for _ in range(3):
        workers.start()
    iid = await client.start("affinity", 12)
    results = await client.wait_for_completion(iid, timeout=60)
    assert len(pids(results)) == 1
    # One worker kept the session's in-memory state the whole time.
    assert [r["count"] for r in results] == list(range(1, 13))


async def test_session_and_plain_activities_mixed(workers: WorkerPool, client: Client) -> None:
    workers.start()
    workers.start()
    iid = await client.start("mixed", 8)
    out = await client.wait_for_completion(iid, timeout=60)
    assert len(pids(out["session"])) == 1
    # The 8 gathered ones ran concurrently (in any order), the last one after them.
    assert sorted(r["count"] for r in out["session"][:8]) == list(range(1, 9))
    assert out["session"][8]["count"] == 9
    assert all(r["session"] is None for r in out["plain"])


# -- moving between workers ----
async def test_killed_owner_then_another_worker_claims_and_retries(
    workers: WorkerPool, client: Client, marker_dir: Path
) -> None:
    pool = [workers.start(), workers.start()]
    iid = await client.start("crash_owner", {"dir": str(marker_dir)})
    await eventually(
        lambda: len(markers(marker_dir, "started-x-")) == 1,
        timeout=30,
        message="held activity started",
    )
    owner_pid = int(markers(marker_dir, "started-x-")[0].split("-")[2])
    owner = next(w for w in pool if w.pid == owner_pid)
    killed_at = time.monotonic()
    owner.kill()
    # After the activity and session leases (2 s) expire, the other worker claims and retries.
    await eventually(
        lambda: len(markers(marker_dir, "started-x-")) == 2,
        timeout=30,
        message="held activity retried",
    )
    assert time.monotonic() - killed_at >= 1.0
    (marker_dir / "release-x").touch()
    first, held, last = await client.wait_for_completion(iid, timeout=30)
    survivor = next(w for w in pool if w is not owner).pid
    assert first["pid"] == owner_pid
    assert held["pid"] == survivor and last["pid"] == survivor
    assert last["count"] == 1  # cold state on the new owner


async def test_graceful_shutdown_releases_sessions_at_once(
    workers: WorkerPool, client: Client
) -> None:
    # Session leases of 30 s: only an explicit release lets another worker in quickly.
    a = workers.start(session_lock_timeout=30.0)
    iid = await client.start("two_phase")
    await eventually(lambda: _phase(client, iid), timeout=30, message="first phase")
    b = workers.start(session_lock_timeout=30.0)
    a.terminate()
    assert a.wait(20) == 0
    released_at = time.monotonic()
    await client.raise_event(iid, "go")
    first, second = await client.wait_for_completion(iid, timeout=20)
    assert first["pid"] == a.pid and second["pid"] == b.pid
    assert time.monotonic() - released_at < 10
    assert "session released" in a.log() or "released" in a.log()


async def test_graceful_shutdown_hands_back_in_flight_work(
    workers: WorkerPool, client: Client, marker_dir: Path
) -> None:
    a = workers.start(
        session_lock_timeout=30.0,
        lock_timeout=30.0,
        renewal_interval=1.0,
        shutdown_grace_period=0.5,
    )
    iid = await client.start("crash_owner", {"dir": str(marker_dir)})
    await eventually(
        lambda: len(markers(marker_dir, "started-x-")) == 1,
        timeout=30,
        message="held activity started",
    )
    b = workers.start(session_lock_timeout=30.0, lock_timeout=30.0, renewal_interval=1.0)
    a.terminate()
    assert a.wait(20) == 0
    # Handed back at once (not after the 30 s leases): b runs it now.
    await eventually(
        lambda: len(markers(marker_dir, "started-x-")) == 2,
        timeout=10,
        message="held activity re-run on b",
    )
    (marker_dir / "release-x").touch()
    _, held, last = await client.wait_for_completion(iid, timeout=20)
    assert held["pid"] == b.pid and last["pid"] == b.pid
    assert markers(marker_dir, "cancelled-x-")  # a's copy was told to stop


# -- closing ----
@pytest.mark.parametrize("activity", ["hold", "hold_sync"])
async def test_close_cancels_in_flight_and_ignores_late_completion_then_reopen(
    workers: WorkerPool, client: Client, marker_dir: Path, e2e_redis_url: str, activity: str
) -> None:
    workers.start()
    workers.start()
    iid = await client.start("close_inflight", {"dir": str(marker_dir), "activity": activity})
    await eventually(
        lambda: len(markers(marker_dir, "started-inflight-")) == 1,
        timeout=30,
        message="in-flight activity started",
    )
    await client.raise_event(iid, "close")
    await eventually(lambda: _custom(client, iid, "closed"), timeout=30, message="closed")
    if activity == "hold":
        await eventually(
            lambda: markers(marker_dir, "cancelled-inflight-"),
            timeout=10,
            message="the async activity was cancelled",
        )
    else:
        (marker_dir / "release-inflight").touch()  # the sync one finishes late, ignored
        await eventually(
            lambda: markers(marker_dir, "finished-inflight-"),
            timeout=10,
            message="the sync activity finished late",
        )
        await anyio.sleep(0.5)
    assert await session_fields(client, e2e_redis_url, iid) == []
    await client.raise_event(iid, "reopen")
    out = await client.wait_for_completion(iid, timeout=30)
    assert out["after"]["session"] == "c"
    history = await client.get_history(iid)
    inflight_id = next(
        e.event_id
        for e in history
        if type(e).__name__ == "ActivityScheduled" and e.name == activity
    )
    assert not [
        e
        for e in history
        if type(e).__name__ in ("ActivityCompleted", "ActivityFailed")
        and e.activity_id == inflight_id
    ]
    assert len(markers(marker_dir, "started-inflight-")) == 1  # never retried


# -- continue-as-new and terminal states ----
async def test_continue_as_new_keeps_sessions(
    workers: WorkerPool, client: Client, e2e_redis_url: str
) -> None:
    workers.start()
    workers.start()
    iid = await client.start("can_sessions", {})
    await eventually(lambda: _has_key(client, iid, "owner"), timeout=30, message="mid-way")
    custom = await status_value(client, iid)
    # Between executions the session's record and its owner's lease are still there.
    assert len(await session_fields(client, e2e_redis_url, iid)) == 1
    lost = await client.store.renew_sessions(
        custom["owner"], [SessionRef(iid, custom["session"])], 30_000
    )
    assert lost == []
    await client.raise_event(iid, "continue")
    results = await client.wait_for_completion(iid, timeout=60)
    assert len(results) == 8
    assert len(pids(results)) == 1
    assert [r["count"] for r in results] == list(range(1, 9))
    state = await client.get_status(iid)
    assert state is not None and state.execution_id == 4
    assert await session_fields(client, e2e_redis_url, iid) == []  # purged on completion


@pytest.mark.parametrize("how", ["complete", "fail", "cancel"])
async def test_terminal_states_purge_all_sessions(
    workers: WorkerPool, client: Client, e2e_redis_url: str, how: str
) -> None:
    workers.start()
    workers.start()
    iid = await client.start("terminal_sessions", how)
    await eventually(lambda: _has_key(client, iid, "sessions"), timeout=30, message="sessions")
    sessions = (await status_value(client, iid))["sessions"]
    assert len(await session_fields(client, e2e_redis_url, iid)) == 2
    await client.raise_event(iid, "end")
    if how == "complete":
        assert await client.wait_for_completion(iid, timeout=30) == "done"
    elif how == "fail":
        with pytest.raises(OrchestrationFailedError):
            await client.wait_for_completion(iid, timeout=30)
    else:
        await anyio.sleep(0.3)
        await client.cancel(iid)
        with pytest.raises(OrchestrationCancelledError):
            await client.wait_for_completion(iid, timeout=30)
    assert await session_fields(client, e2e_redis_url, iid) == []
    for session_id, owner in sessions:
        lost = await client.store.renew_sessions(owner, [SessionRef(iid, session_id)], 30_000)
        assert lost == [SessionRef(iid, session_id)]


# -- capacity, idle timeout, interleaving ----
async def test_capacity_spills_new_sessions_while_owned_ones_flow(
    workers: WorkerPool, client: Client
) -> None:
    a = workers.start(max_sessions_per_worker=1)
    iid = await client.start("two_sessions", 3)
    await eventually(lambda: _custom(client, iid, "first done"), timeout=30, message="first")
    b = workers.start()
    await client.raise_event(iid, "go")
    out = await client.wait_for_completion(iid, timeout=60)
    assert pids(out["one"]) == {a.pid}  # owned session kept flowing on the full worker
    assert pids(out["two"]) == {b.pid}  # the new one spilled over


async def test_two_sessions_on_two_workers_interleaved(workers: WorkerPool, client: Client) -> None:
    workers.start(max_sessions_per_worker=1)
    workers.start(max_sessions_per_worker=1)
    iid = await client.start("two_sessions", 4)
    await eventually(lambda: _custom(client, iid, "first done"), timeout=30, message="first")
    await client.raise_event(iid, "go")
    out = await client.wait_for_completion(iid, timeout=60)
    one, two = pids(out["one"]), pids(out["two"])
    assert len(one) == 1 and len(two) == 1 and one != two
    # In-memory state kept across turns (when_any losers may have run too: counts can skip).
    counts = [r["count"] for r in out["one"]]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


async def test_idle_timeout_releases(workers: WorkerPool, client: Client) -> None:
    a = workers.start(session_lock_timeout=30.0, session_idle_timeout=0.5)
    iid = await client.start("two_phase")
    await eventually(lambda: _phase(client, iid), timeout=30, message="first phase")
    await anyio.sleep(2.0)  # idle timeout 0.5 s, checked every 0.25 s
    os.kill(a.pid, signal.SIGSTOP)  # a can no longer take anything
    try:
        b = workers.start(session_lock_timeout=30.0)
        await client.raise_event(iid, "go")
        first, second = await client.wait_for_completion(iid, timeout=15)
        assert first["pid"] == a.pid and second["pid"] == b.pid
    finally:
        os.kill(a.pid, signal.SIGCONT)


async def test_without_idle_timeout_a_stalled_owner_keeps_its_session(
    workers: WorkerPool, client: Client
) -> None:
    a = workers.start(session_lock_timeout=30.0)
    iid = await client.start("two_phase")
    await eventually(lambda: _phase(client, iid), timeout=30, message="first phase")
    await anyio.sleep(1.0)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        workers.start(session_lock_timeout=30.0)
        await client.raise_event(iid, "go")
        await anyio.sleep(3.0)
        state = await client.get_status(iid)
        assert state is not None and state.status is InstanceStatus.RUNNING
    finally:
        os.kill(a.pid, signal.SIGCONT)
    first, second = await client.wait_for_completion(iid, timeout=15)
    assert first["pid"] == second["pid"] == a.pid


# -- scope ----
async def test_child_does_not_inherit_parent_sessions(workers: WorkerPool, client: Client) -> None:
    workers.start()
    iid = await client.start("parent_with_session")
    out = await client.wait_for_completion(iid, timeout=30)
    assert out.startswith("child failed") and "not open" in out


async def test_many_open_close_cycles_leave_no_stray_keys(
    workers: WorkerPool, client: Client, e2e_redis_url: str
) -> None:
    workers.start()
    workers.start()
    before = await namespace_keys(client, e2e_redis_url)
    iid = await client.start("cycles", 30)
    assert await client.wait_for_completion(iid, timeout=90) == 30
    assert await session_fields(client, e2e_redis_url, iid) == []
    await client.purge(iid)
    await anyio.sleep(0.5)
    after = await namespace_keys(client, e2e_redis_url)
    stray = {k for k in after - before if iid in k or ":sess" in k or ":w:" in k}
    assert stray == set(), stray
    store: Any = client.store
    r = store._r
    pk = store._pk(iid)
    assert await r.hlen(pk.sess) == 0
    assert await r.zcard(pk.wq_leases) == 0
    assert not await r.hexists(pk.sess, session_key(iid, "cycle-0"))


async def _custom(client: Client, iid: str, expected: Any) -> bool:
    return await status_value(client, iid) == expected


async def _has_key(client: Client, iid: str, key: str) -> bool:
    value = await status_value(client, iid)
    return isinstance(value, dict) and key in value


async def _phase(client: Client, iid: str) -> bool:
    value = await status_value(client, iid)
    return isinstance(value, dict) and value.get("phase") == "waiting"
