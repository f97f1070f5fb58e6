"""The Redis rules, each checked: one slot per script call, every key in KEYS (headers match the
wrappers), refused calls change nothing, every mutating script safe to run twice, leases on the
server clock, namespace loss detected, unsafe eviction refused."""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

import anyio
import pytest
from store_support import LOCK, MARKERS, fetch, schedule, snapshot, start, turn, work

from durable_redis.errors import (
    ConfigurationError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceRunningError,
    JobExistsError,
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    NamespaceMissingError,
)
from durable_redis.storage import (
    InstanceCreate,
    InstanceStatus,
    OutboundMessage,
    RedisStore,
    SessionRef,
)
from durable_redis.storage.job_types import ExistingJobPolicy, JobAck, JobOutcome, NewJob
from durable_redis.storage.keys import cluster_slot, meta_key, partition_of
from durable_redis.storage.scripts import SCRIPTS, load_script_source, lua_dir

pytestmark = pytest.mark.anyio

Calls = list[tuple[str, list[str], list[Any]]]


def calls_of(store: RedisStore) -> Calls:
    return store.script_calls  # type: ignore[attr-defined,no-any-return]


# -- headers and arity ---------------------------------------------------------------------


def _section(text: str, name: str) -> str:
    match = re.search(rf"^{name}\n(.*?)^(?:KEYS|ARGV|RETURNS|STATUS)\n", text, re.M | re.S)
    assert match, f"missing {name} section"
    return match.group(1)


def _arity(section: str) -> tuple[int, bool]:
    numbers = {int(n) for n in re.findall(r"(?:^\s+|\s{2,})(\d+)\s+[a-z_]", section, re.M)}
    variadic = re.search(r"\d+\.\.\.", section) is not None
    fixed = max(numbers, default=0)
    assert numbers == set(range(1, fixed + 1)), f"non-contiguous numbering {sorted(numbers)}"
    return fixed, variadic


def test_every_script_has_a_header_matching_its_wrapper() -> None:
    files = {p.stem for p in lua_dir().glob("*.lua")}
    assert files == set(SCRIPTS), "one file per script, and a ScriptSpec for each"
    for name, spec in SCRIPTS.items():
        text = (lua_dir() / f"{name}.lua").read_text()
        assert text.startswith(f"--[[\n{name}: "), name
        header = text[: text.index("]]")] + "\n"
        keys = _arity(_section(header, "KEYS"))
        argv = _arity(_section(header, "ARGV"))
        assert keys == (spec.keys, spec.variadic_keys), f"{name} KEYS"
        assert argv == (spec.argv, spec.variadic_argv), f"{name} ARGV"
        assert "RETURNS" in header and "STATUS" in header
        assert "@include" not in load_script_source(name)
        assert "'dr:" not in text and '"dr:' not in text  # no key names built in Lua


def test_cluster_slot_matches_redis_vectors() -> None:
    assert cluster_slot("foo") == 12182
    assert cluster_slot("bar") == 5061
    assert cluster_slot("{user1000}.following") == cluster_slot("{user1000}.followers")
    assert cluster_slot("foo{}{bar}") == cluster_slot("foo{}{bar}")  # empty tag: whole key
    assert cluster_slot("foo{{bar}}zap") == cluster_slot("{bar")


OUTBOX_SCRIPTS = {"outbox_apply", "outbox_ack"}


def other_partition_id(store: RedisStore, iid: str) -> str:
    """An instance id that hashes to another partition than ``iid``."""
    mine = partition_of(iid, store.partitions)
    return next(f"x{n}" for n in range(1000) if partition_of(f"x{n}", store.partitions) != mine)


def expected_scripts(store: RedisStore) -> set[str]:
    """The outbox scripts run only with P > 1 (a message to another partition)."""
    return set(SCRIPTS) if store.partitions > 1 else set(SCRIPTS) - OUTBOX_SCRIPTS


async def exercise_outbox(store: RedisStore) -> None:
    if store.partitions < 2:
        return
    src = "ob-src"
    dst = other_partition_id(store, src)
    await start(store, src)
    await start(store, dst)
    lease = await store.fetch_orchestration(lock_ms=LOCK)
    while lease is not None and lease.instance_id != src:
        await store.commit_turn(lease, turn(lease))
        lease = await store.fetch_orchestration(lock_ms=LOCK)
    assert lease is not None
    await store.commit_turn(lease, turn(lease, messages=[OutboundMessage(dst, "ob-msg", b"hello")]))


async def exercise_every_script(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1", session="s"), work("1:2")], ["s"])
    items = await store.fetch_work_items("A", limit=2, lock_ms=LOCK, session_lock_ms=LOCK)
    await store.renew_work_items(items, LOCK, session_lock_ms=LOCK)
    await store.renew_sessions("A", [SessionRef("a", "s")], LOCK)
    await store.abandon_work_item(items[1])
    await store.ack_work_item(items[0], "done-1", b"r")
    await store.release_sessions("A", [SessionRef("a", "s")])
    await store.enqueue_message("a", "m", b"x")
    lease = await fetch(store)
    await store.renew_orchestration(lease, LOCK)
    await store.abandon_orchestration(lease, held="diverged")
    await store.request_fail_held("a")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, status=InstanceStatus.COMPLETED))
    await store.purge_work("a")
    await reset(store, "a")
    await store.delete_instance("a", force=True)
    await exercise_outbox(store)
    await exercise_jobs(store)


async def exercise_jobs(store: RedisStore) -> None:
    await store.enqueue_jobs(
        [NewJob("j1", "send", b"s", result_ttl_ms=LOCK), NewJob("j2", "x", b"")]
    )
    leases = await store.fetch_jobs("A", limit=2, lock_ms=LOCK)
    await store.renew_jobs(leases, LOCK, [b"half"])
    j1 = next(lease for lease in leases if lease.job_id == "j1")
    await store.ack_jobs([JobAck(j1, JobOutcome.FAILED, b"e")])
    await store.retry_job("j1")
    await store.cancel_job("j1", b"c")
    await store.set_job_queue_paused("gpu", True)
    await store.enqueue_jobs([NewJob("j3", "send", b"s", queue="gpu")])
    assert await store.fetch_jobs("A", limit=2, lock_ms=LOCK, queues=("gpu",)) == []
    await store.set_job_queue_paused("gpu", False)
    assert (await store.queue_status("gpu", wake=True)).paused is False
    [j3] = await store.fetch_jobs("A", limit=2, lock_ms=LOCK, queues=("gpu", "default"))
    await store.ack_jobs([JobAck(j3, JobOutcome.COMPLETED, b"o")])
    now = await store.server_time_ms()
    await store.declare_schedule("sc", b"spec", "h", now - 1)
    await store.claim_schedule(
        "sc",
        expected_due_ms=now - 1,
        next_due_ms=now + 60_000,
        overlap="skip",
        activity="send",
        task=b"t",
        priority=0,
        result_ttl_ms=LOCK,
        ticks=[now - 1],
    )
    await store.declare_schedule("so", b"spec", "h", now - 1)
    await store.claim_schedule_start("so", **start_claim(now))


async def reset(store: RedisStore, iid: str, *, keep: int = 1) -> int | None:
    """Reset ``iid``'s current execution to its first ``keep`` events (stand-in bytes)."""
    info = await store.get_instance(iid)
    assert info is not None
    history = await store.read_history(iid)
    return await store.reset_instance(
        iid,
        execution_id=info.execution_id,
        history_len=len(history),
        keep=keep,
        started=b"started",
        reset_event=b"reset",
        wake=(f"wake-{info.execution_id}", b"wake"),
    )


def start_claim(now: int) -> dict[str, Any]:
    """The arguments of claim_schedule_start for schedule "so" due at ``now - 1``."""
    return {
        "expected_due_ms": now - 1,
        "next_due_ms": now + 60_000,
        "overlap": "skip",
        "last_instance_id": None,
        "orchestration": "o",
        "version": "",
        "input": b"i",
        "start_message": b"m",
        "ticks": [now - 1],
    }


async def test_every_script_call_touches_one_slot(store: RedisStore) -> None:
    await exercise_every_script(store)
    calls = calls_of(store)
    assert {name for name, _, _ in calls} == expected_scripts(store)
    for name, keys, args in calls:
        assert len({cluster_slot(k) for k in keys}) == 1, (name, keys)
        spec = SCRIPTS[name]
        assert len(keys) >= spec.keys and (spec.variadic_keys or len(keys) == spec.keys), name
        assert len(args) >= spec.argv and (spec.variadic_argv or len(args) == spec.argv), name


# -- refused calls change nothing -----------------------------------------------------------


async def test_refused_calls_change_nothing(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1")])
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=LOCK)
    await store.enqueue_message("a", "m", b"x")
    lease = await fetch(store)
    stale = dataclasses.replace(lease, token="9:x")
    stale_item = dataclasses.replace(item, token="9:x")
    await store.enqueue_jobs([NewJob("j", "n", b"")])
    [job] = await store.fetch_jobs("w", limit=1, lock_ms=LOCK)
    before = await snapshot(store)
    stale_job = dataclasses.replace(job, token="9:x")
    assert await store.ack_jobs([JobAck(stale_job, JobOutcome.COMPLETED)]) == [False]
    assert await store.renew_jobs([stale_job], LOCK, [b"p"]) == ["j"]
    assert await snapshot(store) == before
    refusals: list[tuple[type[Exception], Any]] = [
        (LeaseLostError, lambda: store.commit_turn(stale, turn(stale, work_items=[work("2:1")]))),
        (LeaseLostError, lambda: store.commit_turn(lease, _bad_len(lease))),
        (LeaseLostError, lambda: store.renew_orchestration(stale, LOCK)),
        (LeaseLostError, lambda: store.abandon_orchestration(stale)),
        (LeaseLostError, lambda: store.ack_work_item(stale_item, "c", b"r")),
        (LeaseLostError, lambda: store.abandon_work_item(stale_item)),
        (InstanceExistsError, lambda: store.create_instance("a", InstanceCreate("x"), "n", b"x")),
        (InstanceNotFoundError, lambda: store.enqueue_message("ghost", "m", b"x")),
        (InstanceRunningError, lambda: store.delete_instance("a")),
        (InstanceRunningError, lambda: reset(store, "a")),
        (
            JobExistsError,
            lambda: store.enqueue_jobs(
                [NewJob("new", "n", b""), NewJob("j", "n", b"")], policy=ExistingJobPolicy.FAIL
            ),
        ),
        (JobNotFoundError, lambda: store.cancel_job("ghost", b"")),
        (JobNotFoundError, lambda: store.retry_job("ghost")),
        (JobStateError, lambda: store.retry_job("j")),
    ]
    for exc, call in refusals:
        with pytest.raises(exc):
            await call()
        assert await snapshot(store) == before, exc


def _bad_len(lease: Any) -> Any:
    return dataclasses.replace(turn(lease, events=[b"x"]), expected_history_len=5)


# -- every mutating script is safe to run twice ---------------------------------------------


async def rerun_last(store: RedisStore, name: str, *, skip: tuple[str, ...] = MARKERS) -> None:
    """Re-send the last call of ``name`` (a client retry): the data must not change."""
    name_, keys, args = next(c for c in reversed(calls_of(store)) if c[0] == name)
    before = await snapshot(store, skip=skip)
    await store._eval(name_, keys, args)
    assert await snapshot(store, skip=skip) == before, f"{name} is not safe to run twice"


async def test_every_mutating_script_is_safe_to_run_twice(store: RedisStore) -> None:
    leases = ("oq:locks", "wq:leases", ":sess")
    await start(store, "a")
    await rerun_last(store, "create_instance")
    await store.enqueue_message("a", "m", b"x")
    await rerun_last(store, "enqueue_message")
    lease = await fetch(store)
    await rerun_last(store, "claim_orchestration")
    await rerun_last(store, "lock_messages")
    await store.abandon_orchestration(lease, count_attempt=False)
    await rerun_last(store, "abandon_orchestration")
    lease = await fetch(store)
    await store.abandon_orchestration(lease, count_attempt=False, held="diverged")
    await rerun_last(store, "abandon_orchestration")
    await store.request_fail_held("a")
    await rerun_last(store, "fail_held")
    lease = await fetch(store)
    await store.renew_orchestration(lease, LOCK)
    await rerun_last(store, "renew_orchestration", skip=(*MARKERS, *leases))
    await store.commit_turn(
        lease,
        turn(lease, work_items=[work("1:1", session="s"), work("1:2")], sessions_opened=["s"]),
    )
    await rerun_last(store, "commit_turn")
    items = await store.fetch_work_items("A", limit=2, lock_ms=LOCK, session_lock_ms=LOCK)
    assert len(items) == 2
    await rerun_last(store, "fetch_work_items")
    await store.renew_work_items(items, LOCK, session_lock_ms=LOCK)
    await rerun_last(store, "renew_work_items", skip=(*MARKERS, *leases))
    await store.renew_sessions("A", [SessionRef("a", "s")], LOCK)
    await rerun_last(store, "renew_sessions", skip=(*MARKERS, *leases))
    await store.abandon_work_item(items[1])
    await rerun_last(store, "abandon_work_item")
    await store.ack_work_item(items[0], "done", b"r")
    await rerun_last(store, "ack_work_item")
    await store.release_sessions("A", [SessionRef("a", "s")])
    await rerun_last(store, "release_sessions")
    await store.purge_work("a")
    await rerun_last(store, "purge_work")
    await store.delete_instance("a", force=True)
    await rerun_last(store, "delete_instance")
    await start(store, "r")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, status=InstanceStatus.FAILED))
    assert await reset(store, "r") == 2
    await rerun_last(store, "reset_instance")
    if store.partitions > 1:
        await exercise_outbox(store)
        await rerun_last(store, "outbox_apply")
        await rerun_last(store, "outbox_ack")
    await store.enqueue_jobs(
        [NewJob("j1", "send", b"s", result_ttl_ms=LOCK), NewJob("j2", "x", b"")]
    )
    await rerun_last(store, "enqueue_jobs")
    jobs = await store.fetch_jobs("A", limit=2, lock_ms=LOCK)
    await rerun_last(store, "fetch_jobs")
    await store.renew_jobs(jobs, LOCK, [b"p"])
    await rerun_last(store, "renew_jobs", skip=(*MARKERS, "jq:leases"))
    jobs.sort(key=lambda lease: lease.job_id)  # j1, j2 (partitions change the fetch order)
    await store.ack_jobs([JobAck(jobs[0], JobOutcome.FAILED, b"e")])
    await rerun_last(store, "ack_jobs")
    await store.ack_jobs([JobAck(jobs[1], JobOutcome.RETRY, b"e", 60_000)])
    await rerun_last(store, "ack_jobs")
    await store.retry_job("j1")
    await rerun_last(store, "retry_job")  # refused the second time (the job is queued)
    await store.cancel_job("j1", b"c")
    await rerun_last(store, "cancel_job")
    await store.set_job_queue_paused("gpu", True)
    await rerun_last(store, "pause_job_queue")
    await store.set_job_queue_paused("gpu", False)
    await rerun_last(store, "pause_job_queue")
    await store.queue_status("gpu", wake=True)
    await rerun_last(store, "queue_status")
    now = await store.server_time_ms()
    await store.declare_schedule("sc", b"spec", "h", now - 1)
    await rerun_last(store, "set_schedule")
    claim = {"overlap": "skip", "activity": "a", "task": b"t", "priority": 0, "result_ttl_ms": 1}
    await store.claim_schedule(
        "sc", expected_due_ms=now - 1, next_due_ms=now + 9, ticks=[now - 1], **claim
    )  # type: ignore[arg-type]
    await rerun_last(store, "claim_schedule")  # the tick is claimed: refused the second time
    await store.declare_schedule("so", b"spec", "h", now - 1)
    await rerun_last(store, "set_schedule")
    assert await store.claim_schedule_start("so", **start_claim(now)) == (1, False)
    await rerun_last(store, "claim_schedule_start")  # claimed, and the instance exists
    await store.pause_schedule("sc")
    await rerun_last(store, "set_schedule")
    assert {name for name, _, _ in calls_of(store)} == expected_scripts(store)


# -- one clock: the server's ----------------------------------------------------------------


async def test_leases_use_the_server_clock(store: RedisStore) -> None:
    await schedule(store, "a", [work("1:1")])
    await store.enqueue_message("a", "m", b"x")
    t0 = await store.server_time_ms()
    lease = await fetch(store, lock_ms=1_000)
    [item] = await store.fetch_work_items("w", limit=1, lock_ms=2_000)
    t1 = await store.server_time_ms()
    assert t0 + 1_000 <= lease.lease_until_ms <= t1 + 1_000
    assert t0 + 2_000 <= item.lease_until_ms <= t1 + 2_000
    # no script call carried a client timestamp (only durations and caller-chosen times)
    client_now = time.time() * 1000
    for name, _, args in calls_of(store):
        for a in args:
            if isinstance(a, int | str) and str(a).isdigit() and len(str(a)) >= 12:
                assert abs(int(a) - client_now) > 86_400_000, f"{name} got a client time {a}"


# -- namespace loss and eviction policy -----------------------------------------------------


async def test_namespace_loss_is_detected(store: RedisStore) -> None:
    await start(store, "a")
    r: Any = store._redis
    await r.delete(meta_key(store.namespace))
    with pytest.raises(NamespaceMissingError):  # partition data without metadata
        await RedisStore(r, namespace=store.namespace).initialize()
    keys = [k async for k in r.scan_iter(match=f"dr:{{{store.namespace}[:}}]*")]
    await r.delete(*keys)  # "flushed"
    with pytest.raises(NamespaceMissingError):  # the running store notices at its next call
        await store.enqueue_message("a", "m", b"x")
    again = await store.twin()  # a new incarnation...
    with pytest.raises(NamespaceMissingError):  # ...is not silently adopted by the old store
        await store.fetch_orchestration(lock_ms=LOCK)
    assert await again.fetch_orchestration(lock_ms=LOCK) is None


async def test_unsafe_eviction_policy_is_refused(store: RedisStore) -> None:
    if store.backend == "fakeredis":  # type: ignore[attr-defined]
        pytest.skip("not applicable: fakeredis has no CONFIG")
    r: Any = store._redis
    await r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        unsafe = RedisStore(r, namespace=store.namespace)
        with pytest.raises(ConfigurationError, match="noeviction") as refused:
            await unsafe.initialize()
        assert "CONFIG SET maxmemory-policy noeviction" in str(refused.value)
        assert "the command line never does" in str(refused.value)  # no Python-only advice
        allowed = RedisStore(r, namespace=store.namespace, allow_unsafe_eviction=True)
        await allowed.initialize()
    finally:
        await r.config_set("maxmemory-policy", "noeviction")


async def test_expired_lease_is_judged_by_server_time(store: RedisStore) -> None:
    await start(store, "a")
    lease = await fetch(store, lock_ms=100)
    while await store.server_time_ms() <= lease.lease_until_ms:
        await anyio.sleep(0.01)
    with pytest.raises(LeaseLostError):
        await store.renew_orchestration(lease, LOCK)
