"""Poison: an activity that kills its worker on every delivery fails its orchestration with a
poison error after ``max_attempts`` deliveries, and the fleet keeps serving everything else
(killed workers are replaced, as a supervisor would)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.errors import OrchestrationFailedError
from tests.reliability.rel_support import history_check, record_figures

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(180)]

MAX_ATTEMPTS = 3
OTHERS = 30


async def test_poison_activity_fails_its_orchestration_and_the_fleet_keeps_serving(
    pools: Any, redis_url: str, namespace: str, rel_client: Client, workdir: Path
) -> None:
    pool = pools(redis_url, namespace)
    options = {"max_attempts": MAX_ATTEMPTS, "activity_concurrency": 8}
    live = [pool.start("rel_app:app", **options) for _ in range(2)]
    started = time.monotonic()
    poisoned = await rel_client.start("poison", {"dir": str(workdir)}, instance_id="poison")
    args = {"dir": str(workdir), "n": 5, "batch": 5, "sleep": 0.05}
    others = [
        await rel_client.start("fanout", args, instance_id=f"other-{i}") for i in range(OTHERS)
    ]
    replaced = 0
    deadline = time.monotonic() + 150
    pending = {poisoned, *others}
    while pending:
        assert time.monotonic() < deadline, f"still pending: {sorted(pending)[:5]}"
        for i, w in enumerate(live):
            if not w.alive():
                live[i] = pool.start("rel_app:app", **options)
                replaced += 1
        for iid in list(pending):
            state = await rel_client.get_status(iid)
            if state is not None and state.is_terminal:
                pending.discard(iid)
        await anyio.sleep(0.1)
    poison_done = time.monotonic() - started

    with pytest.raises(OrchestrationFailedError) as info:
        await rel_client.wait_for_completion(poisoned, timeout=5)
    details = info.value.details
    assert "poison" in (details.kind + details.type_name + details.message).lower(), details
    crashes = (workdir / "crashes.log").read_text().splitlines()
    assert len(crashes) == MAX_ATTEMPTS, crashes
    recorded_twice = 0
    for iid in others:
        assert await rel_client.wait_for_completion(iid, timeout=5) == sum(range(5))
        counts = history_check(await rel_client.get_history(iid))
        recorded_twice += counts["completed_twice"]
        assert counts["failed"] == 0
    record_figures(
        "poison",
        {
            "max_attempts": MAX_ATTEMPTS,
            "crashes": len(crashes),
            "workers_replaced": replaced,
            "other_orchestrations": OTHERS,
            "others_completed": OTHERS,
            "lost": 0,
            "recorded_twice": recorded_twice,
            "poison_verdict": f"{details.kind}/{details.type_name}",
            "all_done_s": round(poison_done, 1),
        },
    )
    assert recorded_twice == 0
