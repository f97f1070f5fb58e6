"""Helpers shared by the storage contract tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from durable_redis.storage import (
    InstanceCreate,
    InstanceStatus,
    NewWorkItem,
    OrchestrationLease,
    OutboundMessage,
    RedisStore,
    TurnCommit,
)

LOCK = 5_000  # ms: long enough never to expire by accident
SHORT = 150  # ms: leases that tests let expire


async def start(
    store: RedisStore,
    iid: str,
    *,
    name: str = "wf",
    version: str = "1.0",
    data: bytes = b"start",
    message_id: str | None = None,
    parent: str | None = None,
) -> None:
    created = await store.create_instance(
        iid,
        InstanceCreate(name=name, version=version, parent_instance_id=parent, input=b"in"),
        message_id or f"start-{iid}",
        data,
    )
    assert created


async def fetch(store: RedisStore, lock_ms: int = LOCK) -> OrchestrationLease:
    lease = await store.fetch_orchestration(lock_ms=lock_ms)
    assert lease is not None, "expected an orchestration to fetch"
    return lease


def turn(
    lease: OrchestrationLease,
    *,
    events: Sequence[bytes] = (b"event",),
    status: InstanceStatus = InstanceStatus.RUNNING,
    execution_id: int | None = None,
    **kwargs: Any,
) -> TurnCommit:
    exec_id = execution_id or max(1, lease.execution_id)
    expected = len(lease.history) if exec_id == lease.execution_id else 0
    return TurnCommit(
        execution_id=exec_id,
        expected_history_len=expected,
        events=list(events),
        status=status,
        **kwargs,
    )


async def schedule(
    store: RedisStore,
    iid: str,
    items: Sequence[NewWorkItem],
    sessions_opened: Sequence[str] = (),
) -> None:
    """Start ``iid`` and commit a first turn that schedules ``items``."""
    await start(store, iid)
    lease = await fetch(store)
    assert lease.instance_id == iid
    await store.commit_turn(
        lease, turn(lease, work_items=list(items), sessions_opened=list(sessions_opened))
    )


def work(key: str, *, session: str | None = None, data: bytes | None = None) -> NewWorkItem:
    return NewWorkItem(activity_key=key, data=data or f"task-{key}".encode(), session_id=session)


def timer(iid: str, mid: str, at_ms: int) -> OutboundMessage:
    return OutboundMessage(instance_id=iid, message_id=mid, data=b"timer", visible_at_ms=at_ms)


def ns_pattern(store: RedisStore) -> str:
    return f"dr:{{{store.namespace}[:}}]*"


async def snapshot(store: RedisStore, *, skip: Sequence[str] = ()) -> dict[bytes, Any]:
    """Every key of the namespace with its DUMP (real Redis) or its content (fakeredis)."""
    r: Any = store._redis
    out: dict[bytes, Any] = {}
    async for key in r.scan_iter(match=ns_pattern(store), count=500):
        text = key.decode()
        if any(s in text for s in skip):
            continue
        if getattr(store, "backend", "redis") == "redis":
            out[key] = await r.dump(key)
            continue
        kind = (await r.type(key)).decode()
        if kind == "hash":
            out[key] = (kind, await r.hgetall(key))
        elif kind == "zset":
            out[key] = (kind, await r.zrange(key, 0, -1, withscores=True))
        elif kind == "list":
            out[key] = (kind, await r.lrange(key, 0, -1))
        elif kind == "set":
            out[key] = (kind, sorted(await r.smembers(key)))
        else:
            out[key] = (kind, await r.get(key))
    return out


MARKERS = (":marker", ":smarker", ":wake:")
