"""Bad input gets a typed, clear error, and nothing else is lost.

Ids (empty, huge, non-UTF-8, ``{``, ``}``, newline, NUL; ``:`` is allowed), payloads over the
size limit, unencodable payloads, unknown names, a corrupted history, bad session ids, an unsafe
eviction policy, a namespace whose data vanished. The worker runs in the test's event loop
against the session's real ``redis-server`` (fast lane); the eviction test starts its own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
import rel_app
from rel_support import ROOT, namespace_keys

from durable_redis.client import Client
from durable_redis.core import MsgpackCodec
from durable_redis.devtools.server import RedisServer
from durable_redis.errors import (
    CodecError,
    ConfigurationError,
    DurableRedisError,
    InvalidIdError,
    NamespaceMissingError,
    NotRegisteredError,
    OrchestrationFailedError,
    PayloadTooLargeError,
)
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.base import InstanceStatus
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

OPTIONS = WorkerOptions(
    lock_timeout=2.0,
    session_lock_timeout=2.0,
    renewal_interval=0.5,
    fetch_wait=0.2,
    shutdown_grace_period=1.0,
    janitor_interval=None,
    unregistered_backoff=0.2,
    unregistered_backoff_max=0.5,
)
MIB = 1 << 20

BAD_IDS: list[Any] = [
    "",
    "x" * 257,
    "é" * 200,  # 400 bytes
    "\udcff",  # a lone surrogate: not encodable as UTF-8
    "a{b",
    "b}c",
    "{tag}",
    "line\nbreak",
    "cr\rreturn",
    "nul\x00",
    b"bytes",
    42,
    None,
]


@pytest.fixture
async def served(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    """A client, and one Worker serving rel_app in this event loop."""
    store = RedisStore.from_url(redis_url, namespace=namespace)
    worker = Worker(rel_app.app, store, OPTIONS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        async with Client.from_url(redis_url, namespace=namespace, app=rel_app.app) as client:
            yield client
        worker.stop()
    await store.close()


async def _key_snapshot(url: str, namespace: str) -> list[bytes]:
    return namespace_keys(url, namespace)


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
async def test_invalid_ids_are_refused_before_any_write(
    bad: Any, rel_client: Client, redis_url: str, namespace: str
) -> None:
    before = await _key_snapshot(redis_url, namespace)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: rel_client.start("echo", 1, instance_id=bad),
        lambda: rel_client.raise_event(bad, "go", 1),
        lambda: rel_client.raise_event("fine", bad, 1),
        lambda: rel_client.cancel(bad),
        lambda: rel_client.get_status(bad),
        lambda: rel_client.wait_for_completion(bad, timeout=0.1),
        lambda: rel_client.purge(bad),
        lambda: rel_client.get_history(bad),
    ]
    if bad is None:
        calls.pop(0)  # instance_id=None means "generate one": valid
    if isinstance(bad, str):
        calls.append(lambda: rel_client.start(bad, 1))  # as an orchestration name
    else:
        with pytest.raises(NotRegisteredError):
            await rel_client.start(bad, 1)
    for call in calls:
        with pytest.raises(InvalidIdError) as info:
            await call()
        assert str(info.value), "the error says what is wrong"
    assert await _key_snapshot(redis_url, namespace) == before


async def test_ids_with_colons_work_and_do_not_collide(served: Client) -> None:
    ids = ["a", "a:b", "a:b:c", "1:a", "h:1:a", "é:ü"]
    for i, iid in enumerate(ids):
        await served.start("echo", i, instance_id=iid)
    for i, iid in enumerate(ids):
        assert await served.wait_for_completion(iid, timeout=20) == i
        history = await served.get_history(iid)
        assert type(history[0]).__name__ == "OrchestrationStarted"
        assert sum(type(e).__name__ == "OrchestrationCompleted" for e in history) == 1


async def test_payloads_over_the_limit_are_refused_before_any_write(
    rel_client: Client, redis_url: str, namespace: str
) -> None:
    before = await _key_snapshot(redis_url, namespace)
    with pytest.raises(PayloadTooLargeError, match="limit is 1048576"):
        await rel_client.start("echo", b"x" * MIB, instance_id="big")
    with pytest.raises(PayloadTooLargeError):
        await rel_client.raise_event("big", "go", "y" * (MIB + 1))
    assert await _key_snapshot(redis_url, namespace) == before
    assert await rel_client.get_status("big") is None
    # The limit is the codec's: configurable, and None lifts it.
    assert len(MsgpackCodec(max_payload_bytes=None).encode(b"x" * (2 * MIB))) > 2 * MIB
    with pytest.raises(PayloadTooLargeError):
        MsgpackCodec(max_payload_bytes=10).encode("eleven byte")
    with pytest.raises(ConfigurationError):
        MsgpackCodec(max_payload_bytes=0)


async def test_oversized_results_and_outputs_fail_clearly_instead_of_writing(
    served: Client,
) -> None:
    small = await served.start("echo", "still fine")
    act = await served.start("call_big", 2 * MIB)
    out = await served.start("big_output", 2 * MIB)
    assert await served.wait_for_completion(act, timeout=20) == (
        "ActivityFailedError: PayloadTooLargeError"
    )
    with pytest.raises(OrchestrationFailedError) as info:
        await served.wait_for_completion(out, timeout=20)
    assert info.value.details.type_name == "PayloadTooLargeError"
    assert "limit" in info.value.details.message
    assert await served.wait_for_completion(small, timeout=20) == "still fine"


async def test_unencodable_payloads_raise_codec_error(served: Client) -> None:
    with pytest.raises(CodecError):
        await served.start("echo", object())
    with pytest.raises(CodecError):
        await served.raise_event("anything", "go", {1, object()})
    iid = await served.start("call_unencodable")
    assert await served.wait_for_completion(iid, timeout=20) == "ActivityFailedError: CodecError"


async def test_unknown_names_wait_without_harming_other_work(served: Client) -> None:
    # started by a client without the app (one with it refuses the name: NotRegisteredError)
    orch = await Client(served.store).start("no_such_orchestration", 1)
    act = await served.start("call_unknown_activity")
    ok = await served.start("echo", "ok")
    assert await served.wait_for_completion(ok, timeout=20) == "ok"
    await anyio.sleep(1.0)
    # Never failed for a name this deployment does not know (a newer worker may know it)...
    for iid in (orch, act):
        state = await served.get_status(iid)
        assert state is not None and not state.is_terminal, state
    # ...and it can be cancelled like any instance: a cancel needs no code.
    await served.cancel(act, "no worker knows that activity")
    await served.cancel(orch, "no worker knows that orchestration")
    for iid in (act, orch):
        state = await served.wait_for_state(iid, timeout=20)
        assert state.status is InstanceStatus.CANCELLED, state
    history = await served.get_history(orch)
    assert [type(e).__name__ for e in history] == [
        "OrchestrationStarted",
        "OrchestrationCancelRequested",
        "OrchestrationFailed",
    ]


@pytest.mark.parametrize(
    "session",
    ["", "s" * 300, "line\nbreak", "nul\x00", "\udcff"],
    ids=["empty", "huge", "newline", "nul", "surrogate"],
)
async def test_bad_session_ids_fail_the_orchestration_clearly(
    session: str, served: Client, tmp_path: Path
) -> None:
    args = {"session": session, "dir": str(tmp_path), "surrogate": session == "\udcff"}
    iid = await served.start(
        "on_session", {**args, "session": "" if args["surrogate"] else session}
    )
    ok = await served.start("on_session", {"session": "fine:{x}", "dir": str(tmp_path)})
    with anyio.fail_after(20):  # at once, not after max_attempts crashed turns
        with pytest.raises(OrchestrationFailedError) as info:
            await served.wait_for_completion(iid, timeout=20)
    assert info.value.details.type_name == "InvalidIdError", info.value.details
    assert await served.wait_for_completion(ok, timeout=20) == "fine:{x}"


async def test_corrupted_history_fails_that_instance_only(
    served: Client, redis_url: str, namespace: str
) -> None:
    ids = ["victim", "neighbour-1", "neighbour-2"]
    for iid in ids:
        await served.start("wait_event", "go", instance_id=iid)
    for iid in ids:
        with anyio.fail_after(20):
            while (await served.get_status(iid)).status is not InstanceStatus.RUNNING:  # type: ignore[union-attr]
                await anyio.sleep(0.02)
    r = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in r.scan_iter(match=f"dr:{{{namespace}*:h:1:victim")]
        assert len(keys) == 1, keys
        assert await r.type(keys[0]) == b"list"
        await r.lset(keys[0], 0, b"\xc1 not msgpack")
    finally:
        await r.aclose()
    for iid in ids:
        await served.raise_event(iid, "go", iid)
    with pytest.raises(OrchestrationFailedError) as info:
        await served.wait_for_completion("victim", timeout=20)
    assert info.value.details.kind == "poison"
    assert info.value.details.type_name == "CorruptedHistoryError"
    for iid in ids[1:]:
        assert await served.wait_for_completion(iid, timeout=20) == iid


@pytest.fixture
def lru_server() -> Any:
    with RedisServer(extra_args=("--maxmemory-policy", "allkeys-lru")) as server:
        yield server


async def test_eviction_policy_other_than_noeviction_is_refused_at_worker_start(
    lru_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    store = RedisStore.from_url(lru_server.url, namespace=namespace)
    try:
        with anyio.fail_after(10), pytest.raises(ConfigurationError, match="allkeys-lru"):
            await Worker(rel_app.app, store, OPTIONS).run()
    finally:
        await store.close()
    # A worker process refuses too, and says why.
    env_path = f"{Path(__file__).parent}:{ROOT}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "durable_redis.runtime",
            "rel_app:app",
            "--redis-url",
            lru_server.url,
            "--namespace",
            namespace,
        ],
        capture_output=True,
        timeout=60,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        cwd=str(ROOT),
    )
    assert proc.returncode != 0
    assert b"maxmemory-policy" in proc.stderr and b"noeviction" in proc.stderr
    assert namespace_keys(lru_server.url, namespace) == []  # it wrote nothing


async def test_a_namespace_whose_data_vanished_is_detected_not_recreated(
    redis_url: str, namespace: str
) -> None:
    store = RedisStore.from_url(redis_url, namespace=namespace)
    worker = Worker(rel_app.app, store, OPTIONS)
    raised: list[BaseException] = []

    async def run_worker() -> None:
        try:
            await worker.run()
        except NamespaceMissingError as exc:
            raised.append(exc)

    async with (
        anyio.create_task_group() as tg,
        Client.from_url(redis_url, namespace=namespace, app=rel_app.app) as client,
    ):
        tg.start_soon(run_worker)
        iid = await client.start("echo", 1)
        assert await client.wait_for_completion(iid, timeout=20) == 1
        r = aioredis.Redis.from_url(redis_url)
        try:
            keys = [k async for k in r.scan_iter(match=f"dr:{{{namespace}*")]
            assert keys
            await r.delete(*keys)  # what FLUSHALL or a restart without persistence does to it
        finally:
            await r.aclose()
        with pytest.raises(NamespaceMissingError):
            await client.start("echo", 2)
        # the running worker notices at its next fetch and stops, rather than re-create it
        with anyio.fail_after(20):
            while not raised:
                await anyio.sleep(0.05)
    await store.close()
    assert namespace_keys(redis_url, namespace) == []  # nothing was re-created


def test_every_error_is_a_durable_redis_error() -> None:
    for exc in (InvalidIdError, PayloadTooLargeError, CodecError, NamespaceMissingError):
        assert issubclass(exc, DurableRedisError)
    assert issubclass(PayloadTooLargeError, CodecError)


async def test_store_refuses_ids_that_are_not_utf8(redis_url: str, namespace: str) -> None:
    """Below the client too: a lone surrogate is an InvalidIdError, not a UnicodeEncodeError."""
    store = RedisStore.from_url(redis_url, namespace=namespace)
    try:
        await store.initialize()
        with pytest.raises(InvalidIdError):
            await store.enqueue_message("\udcff", "m1", b"x")
        with pytest.raises(InvalidIdError):
            await store.get_instance("\udcff")
    finally:
        await store.close()
