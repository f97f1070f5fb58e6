"""A bad deploy is recoverable (issue 16): real worker processes on v1, then on changed code
(steps swapped), then rolled back. The instance is held, not failed, and completes after the
rollback; ``on_nondeterminism="fail"`` keeps today's failure; an operator can fail a held one."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from e2e_helpers import HERE, ROOT, eventually

from durable_redis.client import Client
from durable_redis.storage.base import InstanceStatus

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(120)]

HELD = {"held_backoff": 0.2, "held_backoff_max": 0.5}


@pytest.fixture
async def client(e2e_redis_url: str, namespace: str) -> AsyncIterator[Client]:
    import e2e_deploy_v1

    async with Client.from_url(e2e_redis_url, namespace=namespace, app=e2e_deploy_v1.app) as c:
        yield c


async def _waiting_on_v1(workers: Any, client: Client, instance_id: str) -> Any:
    v1 = workers.start("e2e_deploy_v1:app", **HELD)
    await client.start("order", "book", instance_id=instance_id)

    async def reserved() -> bool:
        history = await client.get_history(instance_id)
        return any(type(e).__name__ == "ActivityCompleted" for e in history)

    await eventually(reserved, timeout=30, message="v1 reserved the item")
    v1.terminate()
    assert v1.wait(30) == 0
    return v1


async def _held(client: Client, instance_id: str) -> Any:
    async def is_held() -> bool:
        state = await client.get_status(instance_id)
        return state is not None and state.held is not None

    await eventually(is_held, timeout=30, message=f"{instance_id} held")
    return await client.get_status(instance_id)


async def test_a_bad_deploy_holds_the_instance_and_a_rollback_completes_it(
    workers: Any, client: Client
) -> None:
    await _waiting_on_v1(workers, client, "order-1")
    v2 = workers.start("e2e_deploy_v2:app", max_attempts=2, **HELD)  # held turns are not counted
    await client.raise_event("order-1", "paid", "card")
    state = await _held(client, "order-1")
    assert state.status is InstanceStatus.RUNNING, state
    assert "no longer matches its history at event" in state.held
    assert "ActivityScheduled" in state.held and "ship" in state.held, state.held
    assert [s.instance_id for s in await client.list_held()] == ["order-1"]

    # it stays held across retries (the back-off is 0.5 s at most): not failed, not poison
    async def retried_twice() -> bool:
        return v2.log().count("orchestration order-1 is held") >= 4

    await eventually(retried_twice, timeout=30, message="held turns retried")
    assert "ERROR" in v2.log()
    state = await client.get_status("order-1")
    assert state is not None and state.status is InstanceStatus.RUNNING and state.held

    v2.terminate()
    assert v2.wait(30) == 0
    workers.start("e2e_deploy_v1:app", **HELD)  # the rollback
    result = await client.wait_for_completion("order-1", timeout=30)
    assert result == ["reserved book", "card", "shipped book"]
    state = await client.get_status("order-1")
    assert state is not None and state.held is None and state.held_since is None
    assert await client.list_held() == []


async def test_on_nondeterminism_fail_fails_it_as_before(workers: Any, client: Client) -> None:
    await _waiting_on_v1(workers, client, "order-2")
    workers.start("e2e_deploy_v2:app", on_nondeterminism="fail", **HELD)
    await client.raise_event("order-2", "paid", "card")
    state = await client.wait_for_state("order-2", timeout=30)
    assert state.status is InstanceStatus.FAILED
    assert state.error is not None and state.error.kind == "nondeterminism"
    assert state.held is None


def _target(workers: Any) -> list[str]:
    return ["--redis-url", workers.redis_url, "--namespace", workers.namespace]


async def _cli(workers: Any, *args: str, redis: bool = True) -> tuple[int, str]:
    """``durable-redis ARGS`` as a subprocess against the test's namespace (``redis=False``: no
    URL given at all): (exit code, out)."""
    target = _target(workers) if redis else []
    done = await anyio.run_process(
        [sys.executable, "-m", "durable_redis.cli", *args, *target],
        check=False,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])},
    )
    return done.returncode, done.stdout.decode()


async def test_an_operator_lists_and_fails_a_held_instance_from_the_cli(
    workers: Any, client: Client
) -> None:
    await _waiting_on_v1(workers, client, "order-3")
    workers.start("e2e_deploy_v2:app", **HELD)
    await client.raise_event("order-3", "paid", "card")
    await _held(client, "order-3")
    code, out = await _cli(workers, "status", "order-3")
    assert code == 0 and "held" in out and "no longer matches its history" in out, out
    code, out = await _cli(workers, "list", "--held", "--json")
    assert code == 0 and [r["instance_id"] for r in json.loads(out)["instances"]] == ["order-3"]
    code, out = await _cli(workers, "list", "--status", "held")
    assert code == 0 and "order-3" in out and "(held)" in out, out
    code, out = await _cli(workers, "held")
    assert code == 0 and "order-3" in out, out
    code, out = await _cli(workers, "held", "fail", "order-3")
    assert code == 0, out
    state = await client.wait_for_state("order-3", timeout=30)
    assert state.status is InstanceStatus.FAILED
    assert state.error is not None and state.error.kind == "nondeterminism"
    assert state.held is None
    assert await client.fail_held("order-3") is False  # no longer held: nothing changed
    code, out = await _cli(workers, "held", "fail", "order-3")
    assert code == 2  # a usage error: it is not held


async def test_an_operator_purges_a_held_instance(workers: Any, client: Client) -> None:
    await _waiting_on_v1(workers, client, "order-4")
    workers.start("e2e_deploy_v2:app", **HELD)
    await client.raise_event("order-4", "paid", "card")
    await _held(client, "order-4")
    code, out = await _cli(workers, "held", "purge", "order-4")
    assert code == 0, out
    assert await client.get_status("order-4") is None


async def test_patched_code_completes_a_v1_instance_and_runs_new_ones_down_the_new_path(
    workers: Any, client: Client
) -> None:
    await _waiting_on_v1(workers, client, "order-5")
    workers.start("e2e_deploy_v3:app", **HELD)
    await client.raise_event("order-5", "paid", "card")
    assert await client.wait_for_completion("order-5", timeout=30) == [
        "reserved book",
        "card",
        "shipped book",
    ]
    await client.start("order", "pen", instance_id="order-6")
    await eventually(
        lambda: _scheduled(client, "order-6", 1), timeout=30, message="order-6 shipped"
    )
    await client.raise_event("order-6", "paid", "cash")
    assert await client.wait_for_completion("order-6", timeout=30) == [
        "reserved pen",
        "cash",
        "shipped pen",
    ]
    kinds = [type(e).__name__ for e in await client.get_history("order-6")]
    assert kinds[1] == "PatchMarker", kinds
    names = [e.name for e in await client.get_history("order-6") if hasattr(e, "attempt")]
    assert names == ["ship", "reserve"]
    assert await client.list_held() == []


async def _scheduled(client: Client, instance_id: str, count: int) -> bool:
    history = await client.get_history(instance_id)
    return sum(type(e).__name__ == "ActivityCompleted" for e in history) >= count


async def test_the_replay_gate_catches_an_unpatched_change_and_passes_a_patched_one(
    workers: Any, client: Client, tmp_path: Path
) -> None:
    await _waiting_on_v1(workers, client, "order-7")  # running, its history in Redis
    code, out = await _cli(workers, "replay", "e2e_deploy_v2:app")
    assert code == 1, out
    assert "order-7: event 2: recorded ActivityScheduled(name='reserve'" in out, out
    assert "now ActivityScheduled(name='ship'" in out and "1 diverged" in out, out
    code, out = await _cli(workers, "replay", "e2e_deploy_v3:app", "--name", "order")
    assert code == 0 and "replayed 1 histories: 0 diverged" in out, out
    code, out = await _cli(workers, "replay", "e2e_deploy_v1:app", "--status", "completed")
    assert code == 0 and "replayed 0 histories" in out, out

    # the same from exported files, without Redis
    code, out = await _cli(workers, "export", "order-7", "--dir", str(tmp_path / "h"))
    assert code == 0 and (tmp_path / "h" / "order-7.history").is_file(), out
    code, out = await _cli(
        workers, "replay", "e2e_deploy_v2:app", "--json", "--dir", str(tmp_path / "h"), redis=False
    )
    report = json.loads(out)
    assert code == 1 and report["replayed"] == 1, report
    [divergence] = report["divergences"]
    assert divergence["instance_id"] == "order-7" and divergence["position"] == 2
    assert "reserve" in divergence["recorded"] and "ship" in divergence["now"]


async def test_an_operator_resets_a_held_instance_to_rerun_it_on_the_new_code(
    workers: Any, client: Client
) -> None:
    await _waiting_on_v1(workers, client, "order-8")
    workers.start("e2e_deploy_v2:app", **HELD)
    await client.raise_event("order-8", "paid", "card")
    await _held(client, "order-8")
    old = await client.get_history("order-8")
    # the v2 order (ship first) cannot continue v1's history: re-run it from its start on v2
    code, out = await _cli(workers, "reset", "order-8", "--event", "2", "--json")
    error = json.loads(out)["error"]  # event 2 schedules reserve: in flight there
    assert code == 1 and error["type"] == "ResetPointError" and "in flight" in error["message"]
    code, out = await _cli(
        workers, "reset", "order-8", "--event", "1", "--reason", "re-run on v2", "--json"
    )
    assert code == 0, out
    assert json.loads(out) == {
        "instance_id": "order-8",
        "from_execution": 1,
        "from_event": 1,
        "execution_id": 2,
        "reapplied_events": 0,  # "paid" was never consumed (held): it is still queued
    }
    # the queued "paid" event was kept: the new execution ships, takes it, reserves
    assert await client.wait_for_completion("order-8", timeout=30) == [
        "reserved book",
        "card",
        "shipped book",
    ]
    new = await client.get_history("order-8")
    names = [e.name for e in new if type(e).__name__ == "ActivityScheduled"]
    assert names == ["ship", "reserve"]
    reset = new[1]
    assert type(reset).__name__ == "ExecutionReset" and reset.reason == "re-run on v2"
    assert reset.by  # user@host of the CLI
    assert await client.get_history("order-8", execution_id=1) == old  # nothing lost
    state = await client.get_status("order-8")
    assert state is not None and state.held is None and state.execution_id == 2
    code, out = await _cli(workers, "history", "order-8", "--execution", "1")
    assert code == 0 and "ActivityScheduled" in out, out


async def test_the_replay_gate_filters_by_time_and_names_the_source_line(
    workers: Any, client: Client, tmp_path: Path
) -> None:
    import e2e_deploy_v2

    await _waiting_on_v1(workers, client, "order-9")
    code, out = await _cli(workers, "replay", "e2e_deploy_v2:app", "--json")
    [divergence] = json.loads(out)["divergences"]
    source_file = e2e_deploy_v2.__file__
    line = next(
        n
        for n, text in enumerate(Path(source_file).read_text().splitlines(), start=1)
        if "shipped = await ctx.call_activity(ship, item)" in text
    )
    assert divergence["source"] == f"{source_file}:{line}", divergence
    assert divergence["code"] == "shipped = await ctx.call_activity(ship, item)"
    code, out = await _cli(workers, "replay", "e2e_deploy_v2:app")
    assert code == 1 and f"    at {source_file}:{line}: shipped = await" in out, out

    # time windows: on the start (created, the default) or the latest turn (updated)
    windows = {
        ("--since", "1h"): 1,
        ("--until", "1h"): 0,  # started less than an hour ago
        ("--since", "2999-01-01T00:00:00Z"): 0,
        ("--by", "updated", "--since", "10m"): 1,
        ("--by", "updated", "--until", "2000-01-01T00:00:00Z"): 0,
    }
    for flags, replayed in windows.items():
        code, out = await _cli(workers, "replay", "e2e_deploy_v3:app", *flags, "--json")
        assert code == 0 and json.loads(out)["replayed"] == replayed, (flags, out)
    code, out = await _cli(workers, "export", "order-9", "--dir", str(tmp_path))
    assert code == 0, out

    # the same gate from pytest, on the exported files (the start and latest turn: their events)
    from datetime import UTC, datetime, timedelta

    from durable_redis.testing import replay_gate

    now = datetime.now(UTC)
    files = {
        (now - timedelta(hours=1), None, "created"): 1,
        (None, now - timedelta(hours=1), "created"): 0,
        (now - timedelta(minutes=10), None, "updated"): 1,
        (now + timedelta(hours=1), None, "updated"): 0,
    }
    for (since, until, by), replayed in files.items():
        report = await replay_gate(
            e2e_deploy_v2.app, directory=tmp_path, since=since, until=until, by=by
        )
        assert report.replayed == replayed, (since, until, by, report)
        assert report.ok is (replayed == 0)
    report = await replay_gate(e2e_deploy_v2.app, client=client, name="order", by="updated")
    [divergence] = report.divergences
    assert divergence.source == f"{source_file}:{line}"
    with pytest.raises(AssertionError, match=r"order-9: event 2: .*\n    at .*e2e_deploy_v2"):
        report.check()
    code, out = await _cli(workers, "replay", "e2e_deploy_v2:app", "--since", "soon")
    assert code == 2, out  # a usage error: neither a time nor a duration
