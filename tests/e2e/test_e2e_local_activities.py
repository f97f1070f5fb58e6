"""End to end: local activities (``ctx.call_local_activity``) with real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_redis.client import Client
from durable_redis.core import events as ev
from tests.e2e.e2e_helpers import WorkerPool, markers

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(90)]


async def test_local_activities_recorded_not_rerun_failures_and_retries(
    workers: WorkerPool, client: Client, marker_dir: Path
) -> None:
    first = workers.start()
    iid = await client.start("local_steps", {"dir": str(marker_dir)}, instance_id="local-1")

    async def waiting() -> bool:
        history = await client.get_history(iid)
        return any(isinstance(e, ev.EventSubscribed) for e in history)

    from tests.e2e.e2e_helpers import eventually

    await eventually(waiting, timeout=30, message="the orchestration waits for 'go'")
    history = await client.get_history(iid)
    scheduled = [e for e in history if isinstance(e, ev.ActivityScheduled)]
    assert [e.local for e in scheduled] == [True, True]
    completed = [e for e in history if isinstance(e, ev.ActivityCompleted)]
    assert [c.activity_id for c in completed] == [s.event_id for s in scheduled]
    assert len(markers(marker_dir, "local-a-")) == 1
    # another worker process replays the whole history: the recorded results are used
    first.terminate()
    first.wait()
    workers.start()
    await client.raise_event(iid, "go")
    result = await client.wait_for_completion(iid, timeout=30)
    assert result[0] == first.pid and result[1] == 42
    assert result[2].startswith("ActivityFailedError:ValueError:local boom")
    assert result[3] == 3  # two failed attempts, retried on durable timers
    assert len(markers(marker_dir, "local-a-")) == 1
    assert len(markers(marker_dir, "lflaky-")) == 3
    history = await client.get_history(iid)
    timers = [e for e in history if isinstance(e, ev.TimerCreated)]
    assert len(timers) == 2  # the two back-offs
    assert all(e.local for e in history if isinstance(e, ev.ActivityScheduled))
