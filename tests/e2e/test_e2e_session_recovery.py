"""Sessions come back fast: a dead worker's sessions in parallel, a freed slot at once.

Issue 11, bugs 3 and 4, with real worker processes on real Redis:

- a SIGKILLed worker's sessions were resumed one activity at a time by the survivor that took
  them over (every redelivered item ran alone), so recovery grew with their number;
- at ``max_sessions_per_worker``, a session closed by its orchestration freed its slot only at
  the next renewal tick (~11 s by default), logged as "session lease lost (renewal refused)".
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from e2e_helpers import WorkerPool, eventually, markers

from durable_redis.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(120)]

SESSIONS = 6
NAP_S = 1.5
LEASE_S = 1.5


async def test_a_dead_workers_sessions_come_back_in_parallel(
    workers: WorkerPool, client: Client, marker_dir: Path
) -> None:
    leases = {"lock_timeout": LEASE_S, "session_lock_timeout": LEASE_S, "renewal_interval": 0.4}
    doomed = workers.start(**leases)
    args = {"dir": str(marker_dir), "seconds": NAP_S}
    ids = [await client.start("session_nap", args, instance_id=f"nap-{i}") for i in range(SESSIONS)]
    await eventually(
        lambda: len(markers(marker_dir, f"started-nap-{doomed.pid}-1-")) == SESSIONS,
        timeout=30,
        message="every session's activity running on the doomed worker",
    )
    survivor = workers.start(**leases)
    await anyio.sleep(0.5)  # the survivor is up (its own fetch loop running)
    doomed.kill()
    killed_at = time.monotonic()
    pids = [await client.wait_for_completion(iid, timeout=60) for iid in ids]
    recovered_s = time.monotonic() - killed_at
    assert set(pids) == {survivor.pid}
    # Serial recovery takes at least the lease + SESSIONS x NAP_S (10.5 s here); parallel, the
    # lease + one nap (3 s) and overheads. The bound sits between the two, with room for load.
    serial_s = LEASE_S + SESSIONS * NAP_S
    print(f"recovered {SESSIONS} sessions in {recovered_s:.1f}s (serial: >= {serial_s:.1f}s)")
    assert recovered_s < LEASE_S + 3 * NAP_S + 2.0 < serial_s, (recovered_s, serial_s)


async def test_a_freed_session_slot_is_reused_at_once(workers: WorkerPool, client: Client) -> None:
    # Default-like leases: renewal (and its session check) only every 20 s.
    worker = workers.start(
        max_sessions_per_worker=1,
        lock_timeout=60.0,
        session_lock_timeout=60.0,
        renewal_interval=None,
        fetch_wait=2.0,
    )
    first = await client.start("two_phase", None, instance_id="first")
    await eventually(
        lambda: _status(client, "first"), timeout=30, message="first holds the only slot"
    )
    second = await client.start("affinity", 1, instance_id="second")
    await anyio.sleep(1.0)
    state = await client.get_status(second)
    assert state is not None and not state.is_terminal, "the second waits for the slot"
    await client.raise_event(first, "go")
    await client.wait_for_completion(first, timeout=30)
    done_at = time.monotonic()
    await client.wait_for_completion(second, timeout=30)
    waited_s = time.monotonic() - done_at
    print(f"the next session was claimed {waited_s:.2f}s after the slot was freed")
    assert waited_s < 1.0, waited_s  # not after fetch_wait (2 s), nor the renewal tick
    log = worker.log()
    assert "session ended" in log
    assert "session lease lost" not in log  # a normal close is not a lost lease


async def _status(client: Client, iid: str) -> bool:
    state = await client.get_status(iid)
    custom = None if state is None else state.custom_status
    return isinstance(custom, dict) and custom.get("phase") == "waiting"
