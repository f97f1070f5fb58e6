"""Instance-lock exclusivity (G16): 50 concurrent clients raise 20 events each to one instance
while 4 worker processes serve it. Only the holder of the instance lock may commit a turn, so the
history's event ids stay dense and increasing, every event is applied exactly once, and each
client's events are applied in the order that client raised them."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.core import events as ev
from tests.reliability.rel_support import record_figures

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(120)]

CLIENTS = 50
EVENTS_EACH = 20
WORKERS = 4


async def test_concurrent_events_to_one_instance_are_applied_exactly_once(
    pools: Any, redis_url: str, namespace: str, rel_client: Client
) -> None:
    pool = pools(redis_url, namespace)
    workers = [pool.start("rel_app:app") for _ in range(WORKERS)]
    total = CLIENTS * EVENTS_EACH
    iid = await rel_client.start("collect_events", total, instance_id="lock-target")
    started = time.monotonic()

    async def raiser(c: int) -> None:
        async with Client.from_url(redis_url, namespace=namespace) as client:
            for k in range(EVENTS_EACH):
                await client.raise_event(iid, "e", [c, k])

    async with anyio.create_task_group() as tg:
        for c in range(CLIENTS):
            tg.start_soon(raiser, c)
    raised_s = time.monotonic() - started
    output = await rel_client.wait_for_completion(iid, timeout=90)
    done_s = time.monotonic() - started
    assert all(w.alive() for w in workers)

    applied = [tuple(p) for p in output]
    counts = Counter(applied)
    twice = sum(n - 1 for n in counts.values() if n > 1)
    lost = total - len(counts)
    per_client: dict[int, list[int]] = {}
    for c, k in applied:
        per_client.setdefault(c, []).append(k)
    out_of_order = sum(ks != sorted(ks) for ks in per_client.values())
    history = await rel_client.get_history(iid)
    ids = [e.event_id for e in history]
    raised_events = sum(isinstance(e, ev.EventRaised) for e in history)
    dense = ids == list(range(1, len(ids) + 1))
    record_figures(
        "instance_lock",
        {
            "clients": CLIENTS,
            "events_each": EVENTS_EACH,
            "workers": WORKERS,
            "lost": lost,
            "applied_twice": twice,
            "clients_out_of_order": out_of_order,
            "history_events": len(ids),
            "event_raised_in_history": raised_events,
            "dense_increasing_ids": dense,
            "raised_s": round(raised_s, 2),
            "done_s": round(done_s, 2),
        },
    )
    assert lost == 0 and twice == 0, (lost, twice)
    assert set(counts) == {(c, k) for c in range(CLIENTS) for k in range(EVENTS_EACH)}
    assert out_of_order == 0
    assert raised_events == total
    assert dense, ids[:20]
