"""Schedules that start orchestrations, run by real worker processes: one instance per tick,
``<schedule>@<tick ms>``, none twice across 2 workers racing for every tick; overlap "skip"
starts nothing while the previous tick's instance is still running."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import anyio
import pytest

from durable_redis.client import Client

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def _instances(client: Client, prefix: str) -> list[Any]:
    page = await client.list_instances(limit=1000)
    return [i for i in page.instances if i.instance_id.startswith(prefix)]


async def test_one_instance_per_tick_across_two_workers(
    pools: Any, redis_url: str, namespace: str, rel_client: Client
) -> None:
    pool = pools(redis_url, namespace)
    for _ in range(2):
        pool.start("rel_app:app")
    info = await rel_client.create_schedule(
        "orch-tick", orchestration="echo", input={"hello": 1}, every=1, overlap="allow"
    )
    assert info.target == "orchestration" and info.orchestration == "echo"
    with anyio.fail_after(30):
        while len(await _instances(rel_client, "orch-tick@")) < 4:
            await anyio.sleep(0.05)
    await rel_client.delete_schedule("orch-tick")
    found = await _instances(rel_client, "orch-tick@")
    for inst in found:
        assert await rel_client.wait_for_completion(inst.instance_id, timeout=20) == {"hello": 1}
    ticks = [int(i.instance_id.split("@")[1]) for i in found]
    assert all(t % 1000 == 0 for t in ticks)  # the tick's own time: deterministic ids
    assert max(Counter(ticks).values()) == 1
    assert {b - a for a, b in itertools.pairwise(sorted(ticks))} == {1000}  # none missed
    for inst in found:  # each started once: one start message, one execution
        history = await rel_client.get_history(inst.instance_id)
        started = [e for e in history if type(e).__name__ == "OrchestrationStarted"]
        assert len(started) == 1


async def test_overlap_skip_waits_for_the_running_instance(
    pools: Any, redis_url: str, namespace: str, rel_client: Client
) -> None:
    pool = pools(redis_url, namespace)
    pool.start("rel_app:app")
    await rel_client.create_schedule(
        "held", orchestration="wait_event", input="go", every=1, overlap="skip"
    )
    with anyio.fail_after(30):
        while not (first := await _instances(rel_client, "held@")):
            await anyio.sleep(0.05)
    first_tick = int(first[0].instance_id.split("@")[1])
    with anyio.fail_after(30):  # ticks go by, claimed and skipped: the first still runs
        while (await rel_client.get_schedule("held")).next_run_at.timestamp() * 1000 < (  # type: ignore[union-attr]
            first_tick + 3500
        ):
            await anyio.sleep(0.05)
    assert [i.instance_id for i in await _instances(rel_client, "held@")] == [first[0].instance_id]
    await rel_client.raise_event(first[0].instance_id, "go", "done")
    assert await rel_client.wait_for_completion(first[0].instance_id, timeout=20) == "done"
    with anyio.fail_after(30):  # the next tick after it ended starts the next one
        while len(found := await _instances(rel_client, "held@")) < 2:
            await anyio.sleep(0.05)
    await rel_client.delete_schedule("held")
    second_tick = int(found[1].instance_id.split("@")[1]) if len(found) == 2 else 0
    assert second_tick >= first_tick + 3000
