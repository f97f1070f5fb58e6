"""Store contract of talking to running orchestrations (docs/messaging.md): key-value state and
update replies written by commit_turn, progress streams, all removed with the instance."""

from __future__ import annotations

import pytest

from durable_redis.storage import InstanceStatus, RedisStore, TurnCommit
from durable_redis.storage.messaging import (
    REPLY_TTL_MS,
    STREAM_MAXLEN,
    STREAM_TTL_MS,
    messaging_args,
)
from tests.storage.store_support import fetch, start, turn

pytestmark = pytest.mark.anyio


def test_messaging_args_pack_values_replies_and_stream() -> None:
    commit = TurnCommit(
        execution_id=1,
        expected_history_len=0,
        events=[],
        status=InstanceStatus.RUNNING,
        values=[("a", b"x"), ("b", None)],
        update_replies=[("u1", b"r")],
        stream_items=[b"s1", b"s2"],
    )
    assert messaging_args(commit) == [
        2, "a", "1", b"x", "b", "2", b"",
        1, "u1", b"r",
        REPLY_TTL_MS,
        2, b"s1", b"s2",
        STREAM_MAXLEN, STREAM_TTL_MS,
    ]  # fmt: skip


async def test_commit_writes_values_replies_and_stream(store: RedisStore) -> None:
    await start(store, "kv-1")
    lease = await fetch(store)
    await store.commit_turn(
        lease,
        turn(
            lease,
            values=[("a", b"1"), ("b", b"2")],
            update_replies=[("u1", b"reply")],
            stream_items=[b"p1", b"p2"],
        ),
    )
    assert await store.get_values("kv-1") == {"a": b"1", "b": b"2"}
    assert await store.get_values("kv-1", ["b", "missing"]) == {"b": b"2"}
    assert await store.get_update_reply("kv-1", "u1") == b"reply"
    assert await store.get_update_reply("kv-1", "u2") is None
    rows = await store.read_stream("kv-1")
    assert [d for _, d in rows] == [b"p1", b"p2"]
    after = await store.read_stream("kv-1", after=rows[0][0])
    assert after == rows[1:]
    # a later turn deletes one key and appends more; an activity appends directly
    await store.enqueue_message("kv-1", "m2", b"msg")
    lease = await fetch(store)
    await store.commit_turn(lease, turn(lease, values=[("a", None)], stream_items=[b"p3"]))
    offset = await store.append_stream("kv-1", b"from-activity")
    assert await store.get_values("kv-1") == {"b": b"2"}
    rows = await store.read_stream("kv-1", after=rows[1][0])
    assert rows == [(rows[0][0], b"p3"), (offset, b"from-activity")]
    assert await store.read_stream("kv-1", after=offset, block_ms=50) == []


async def test_values_replies_and_stream_go_with_the_instance(store: RedisStore) -> None:
    await start(store, "kv-2")
    lease = await fetch(store)
    await store.commit_turn(
        lease,
        turn(
            lease,
            status=InstanceStatus.COMPLETED,
            output=b"done",
            values=[("a", b"1")],
            update_replies=[("u", b"r")],
            stream_items=[b"p"],
        ),
    )
    assert await store.delete_instance("kv-2") == 1
    assert await store.get_values("kv-2") == {}
    assert await store.get_update_reply("kv-2", "u") is None
    assert await store.read_stream("kv-2") == []
