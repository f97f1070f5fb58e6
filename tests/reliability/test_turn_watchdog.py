"""The turn watchdog with real worker processes: orchestration code that spins is interrupted
and its instance held (``TurnTimeoutError``) while the same worker keeps completing other
instances; code that kills its worker (``os._exit``) is held (``TurnCrashedWorkerError``) after
``max_turn_crashes`` deliveries and never run again, and the pool keeps serving the rest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from rel_support import record_figures

from durable_redis.client import Client
from durable_redis.errors import OrchestrationFailedError

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(120)]

APP = "rel_watchdog_app:app"
TURN_TIMEOUT = 1.0
SLACK = 2.5  # the watchdog ticks every turn_timeout / 4; the hold is one script call after it
MAX_CRASHES = 3


@pytest.fixture
async def wd_client(redis_url: str, namespace: str) -> Any:
    import rel_watchdog_app

    async with Client.from_url(redis_url, namespace=namespace, app=rel_watchdog_app.app) as c:
        yield c


async def _until(what: str, timeout: float, check: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await anyio.sleep(0.05)


async def test_spinning_turn_is_held_and_the_worker_keeps_serving(
    pools: Any, redis_url: str, namespace: str, wd_client: Client, workdir: Path
) -> None:
    pool = pools(redis_url, namespace)
    worker = pool.start(APP, turn_timeout=TURN_TIMEOUT, held_backoff=3.0, held_backoff_max=3.0)
    # one worker, so the plain instance can only complete beside the spinning one; it is
    # started while the spinning turn runs (or is about to)
    await wd_client.start("spin", {"dir": str(workdir)}, instance_id="spinner")
    t0 = time.monotonic()
    plain = await wd_client.start("steps", 5, instance_id="plain")

    async def held() -> Any:
        state = await wd_client.get_status("spinner")
        return state if state is not None and state.held is not None else None

    state = await _until("the spinning instance held", 30 + TURN_TIMEOUT + SLACK, held)
    spin_started = float((workdir / "spins.log").read_text().splitlines()[0].split()[1])
    held_after = time.time() - spin_started
    assert state.held.startswith("TurnTimeoutError:"), state.held
    assert state.status.value == "pending", state.status  # its first turn never committed
    assert [s.instance_id for s in await wd_client.list_held()] == ["spinner"]

    assert await wd_client.wait_for_completion(plain, timeout=30) == sum(range(5))
    plain_s = time.monotonic() - t0  # includes the worker's start-up and the held spin
    assert worker.alive()
    spins = (workdir / "spins.log").read_text().splitlines()

    # an operator fails it: at its next delivery (the 3 s held back-off), without running its
    # code again (a retry already running when the request lands may spin once more)
    assert await wd_client.fail_held("spinner")
    with pytest.raises(OrchestrationFailedError) as info:
        await wd_client.wait_for_completion("spinner", timeout=30)
    details = info.value.details
    assert (details.kind, details.type_name) == ("poison", "TurnTimeoutError"), details
    assert len((workdir / "spins.log").read_text().splitlines()) <= len(spins) + 1
    assert worker.alive()
    record_figures(
        "turn_watchdog_spin",
        {
            "turn_timeout_s": TURN_TIMEOUT,
            "held_after_s": round(held_after, 2),
            "other_instance_done_s": round(plain_s, 2),
            "worker_restarts": 0,
            "spinning_turns_run": len(spins),
        },
    )
    assert held_after <= TURN_TIMEOUT + SLACK, held_after


async def test_worker_killing_turn_is_held_after_max_crashes_and_the_pool_keeps_serving(
    pools: Any, redis_url: str, namespace: str, wd_client: Client, workdir: Path
) -> None:
    pool = pools(redis_url, namespace)
    options = {"max_turn_crashes": MAX_CRASHES, "lock_timeout": 1.0, "renewal_interval": 0.3}
    live = [pool.start(APP, **options) for _ in range(2)]
    started = time.monotonic()
    await wd_client.start("exit_hard", {"dir": str(workdir)}, instance_id="killer")
    others = [await wd_client.start("steps", 3, instance_id=f"other-{i}") for i in range(10)]
    replaced = 0
    held_at: float | None = None
    deadline = time.monotonic() + 90
    pending = set(others)
    while pending or held_at is None:
        assert time.monotonic() < deadline, f"pending: {sorted(pending)}, held: {held_at}"
        for i, w in enumerate(live):
            if not w.alive():  # a supervisor restarts dead workers
                live[i] = pool.start(APP, **options)
                replaced += 1
        if held_at is None:
            state = await wd_client.get_status("killer")
            if state is not None and state.held is not None:
                held_at = time.monotonic() - started
                assert state.held.startswith("TurnCrashedWorkerError:"), state.held
        for iid in list(pending):
            state = await wd_client.get_status(iid)
            if state is not None and state.is_terminal:
                pending.discard(iid)
        await anyio.sleep(0.1)
    for iid in others:
        assert await wd_client.wait_for_completion(iid, timeout=5) == sum(range(3))
    # held: its code never runs again (a few more held deliveries pass meanwhile)
    await anyio.sleep(3.0)
    exits = (workdir / "exits.log").read_text().splitlines()
    assert len(exits) == MAX_CRASHES, exits
    assert all(w.alive() for w in live)
    state = await wd_client.get_status("killer")
    assert state is not None and state.status.value == "pending" and state.held is not None
    record_figures(
        "turn_watchdog_exit",
        {
            "max_turn_crashes": MAX_CRASHES,
            "worker_crashes": len(exits),
            "workers_replaced": replaced,
            "held_after_s": round(held_at, 1),
            "other_orchestrations": len(others),
            "others_completed": len(others),
        },
    )
