"""Client retries: a script whose reply is lost (the connection drops after Redis ran it, which is
what a socket timeout looks like) is sent again by redis-py's retry. Every mutating script must be
safe to run twice: the second run changes nothing.

A loopback proxy cuts replies: first one at a time around single store calls, then every Nth reply
under a real workload of worker processes, checking that nothing was recorded twice.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from durable_redis import core
from durable_redis.client import Client
from durable_redis.storage.base import InstanceCreate, InstanceStatus
from durable_redis.storage.redis_store import RedisStore
from tests.reliability.rel_proxy import Proxy
from tests.reliability.rel_support import (
    execution_counts,
    history_check,
    record_figures,
    scheduled_ids,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]


@pytest.fixture
async def proxy(redis_server: Any) -> AsyncIterator[Proxy]:
    p = await Proxy(unix_path=redis_server.socket_path).start()
    try:
        yield p
    finally:
        await p.close()


async def test_single_calls_resent_after_a_lost_reply_change_nothing_twice(
    proxy: Proxy, namespace: str, redis_url: str
) -> None:
    store = RedisStore.from_url(proxy.url, namespace=namespace)
    direct = RedisStore.from_url(redis_url, namespace=namespace)
    try:
        await store.initialize()
        await direct.initialize()
        start = core.encode_message(core.start_message(name="echo", version="", input=b"\xc0"))

        proxy.cut_next_reply()
        created = await store.create_instance(
            "retried", InstanceCreate(name="echo", input=b"\xc0"), "start:1", start
        )
        assert proxy.cuts_done == 1
        assert created is True  # the re-sent create recognises its own start message
        info = await direct.get_instance("retried")
        assert info is not None and info.status is InstanceStatus.PENDING
        assert (await direct.queue_depths()).orchestration_messages == 1

        event = core.encode_message(core.event_raised_message("go", b"\xc0"))
        proxy.cut_next_reply()
        await store.enqueue_message("retried", "event:1", event)
        assert proxy.cuts_done == 2
        assert (await direct.queue_depths()).orchestration_messages == 2  # not 3

        # A lost reply to a fetch costs a lease timeout, never a duplicate: the lock it took is
        # held by a token nobody knows until it expires.
        lease = await direct.fetch_orchestration(lock_ms=2000)
        assert lease is not None and len(lease.messages) == 2
    finally:
        await store.close()
        await direct.close()


@pytest.mark.slow
async def test_workload_with_every_seventh_reply_cut(
    pools: Any, proxy: Proxy, namespace: str, rel_client: Client, workdir: Path
) -> None:
    pool = pools(proxy.url, namespace)
    for _ in range(2):
        pool.start("rel_app:app", activity_concurrency=8)
    proxy.cut_every = 7
    orchestrations, per = 20, 10
    args = {"dir": str(workdir), "n": per, "batch": 5, "sleep": 0.0}
    started = time.monotonic()
    ids = [
        await rel_client.start("fanout", args, instance_id=f"cut-{i}")
        for i in range(orchestrations)
    ]
    for iid in ids:
        assert await rel_client.wait_for_completion(iid, timeout=150) == sum(range(per))
    elapsed = time.monotonic() - started
    proxy.cut_every = 0
    runs = execution_counts(workdir)
    lost = recorded_twice = 0
    for iid in ids:
        history = await rel_client.get_history(iid)
        counts = history_check(history)
        assert counts["completed"] == counts["scheduled"] == per, counts
        assert counts["dense_ids"] == 1 and counts["failed"] == 0, counts
        recorded_twice += counts["completed_twice"] + counts["unscheduled_completions"]
        lost += sum(1 for aid in scheduled_ids(history) if runs[(iid, aid)] == 0)
    record_figures(
        "client_retries",
        {
            "activities": orchestrations * per,
            "replies_cut": proxy.cuts_done,
            "lost": lost,
            "recorded_twice": recorded_twice,
            "repeated_executions": sum(n - 1 for n in runs.values()),
            "elapsed_s": round(elapsed, 1),
        },
    )
    assert proxy.cuts_done > 20
    assert lost == 0 and recorded_twice == 0
