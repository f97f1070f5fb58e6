"""Corruption in the middle of a stored history is noticed, even by a warm worker (issue 11, bug 5).

A worker keeps a running orchestration suspended between turns and resumes it only if the
lease's history is exactly the committed one. That check read the length and the first and last
entries, so an entry overwritten in the middle went unnoticed: the instance completed and its
history stayed unreadable, with ``CodecError: undecodable record:`` and nothing after the colon.
Now every entry is compared byte for byte, and the error names the entry and says why.
"""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from durable_redis.client import Client
from durable_redis.core import App, OrchestrationContext, decode_history, encode_event
from durable_redis.core import messages as msg
from durable_redis.errors import CodecError
from durable_redis.runtime import Worker, WorkerOptions, _bridge
from durable_redis.storage.base import InstanceStatus, OrchestrationLease
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

app = App("corrupted")
GARBAGE = b"\xc1 not msgpack"


@app.orchestration
async def steps(ctx: OrchestrationContext, _: None = None) -> str:
    for i in range(3):
        ctx.set_custom_status(i)
    return str(await ctx.wait_for_event("go"))


def _lease(history: list[bytes]) -> OrchestrationLease:
    return OrchestrationLease(
        instance_id="a",
        token="t",
        lease_until_ms=0,
        fetched_at_ms=0,
        execution_id=1,
        history=history,
        messages=[],
        attempt=1,
        instance=None,
    )


def test_the_suspended_cache_notices_a_changed_middle_entry() -> None:
    cache = _bridge.SuspendedCache()
    start = msg.StartOrchestration(name="steps", input=b"")
    result, after = _bridge.run_turn(app, "a", [], [start], 1, app.codec)
    assert after is not None
    commit = _bridge.to_commit(result)
    cache.put(_lease([]), commit, after)
    history = list(commit.events)
    assert len(history) >= 4
    changed = [*history[:2], encode_event(decode_history(history)[1]), *history[3:]]
    assert changed[0] == history[0] and changed[-1] == history[-1]
    assert len(changed) == len(history) and changed != history
    assert cache.take(_lease(changed)) is None  # same length, first and last: not the same
    assert after.closed


def test_a_codec_error_names_the_entry_and_why() -> None:
    start = msg.StartOrchestration(name="steps", input=b"")
    result, after = _bridge.run_turn(app, "a", [], [start], 1, app.codec)
    assert after is not None
    after.close()
    history = list(_bridge.to_commit(result).events)
    history[2] = GARBAGE
    with pytest.raises(CodecError) as info:
        decode_history(history)
    message = str(info.value)
    assert f"history entry 2 (event 3 of {len(history)}) cannot be decoded" in message
    assert "undecodable record (FormatError: not msgpack; 13 bytes: c1206e6f74" in message


async def test_a_warm_worker_fails_an_instance_corrupted_in_the_middle(
    store: RedisStore, task_group: anyio.abc.TaskGroup, fast_options: WorkerOptions
) -> None:
    worker = Worker(app, store, fast_options)
    task_group.start_soon(worker.run)
    client = Client(store, app)
    iid = await client.start(steps, None)
    with anyio.fail_after(20):
        while True:
            state = await client.get_status(iid)
            if state is not None and state.custom_status == 2:
                break
            await anyio.sleep(0.02)
    assert len(worker._orchestrations._suspended) == 1  # warm: the next turn would resume
    key = store._pk(iid).instance(iid).history(1)
    assert await store._r.llen(key) >= 4
    await store._r.lset(key, 2, GARBAGE)  # neither the first nor the last entry
    await client.raise_event(iid, "go", "on")
    state = await client.wait_for_state(iid, timeout=20)
    assert state.status is InstanceStatus.FAILED, state
    assert state.error is not None and state.error.type_name == "CorruptedHistoryError"
    assert "history entry 2 (event 3 of" in state.error.message
    with pytest.raises(CodecError, match=rf"the history of '{iid}': history entry 2 \(event 3"):
        await client.get_history(iid)
    worker.stop()
