"""SyncClient's queue controls: drain (pause, report, await) and queue_status, on a real
Redis, from plain blocking code."""

from __future__ import annotations

import pytest

from durable_redis import SyncClient
from durable_redis.errors import InvalidIdError


def test_sync_drain_and_status(redis_url: str, namespace: str) -> None:
    with SyncClient.from_url(redis_url, namespace=namespace) as client:
        status = client.drain_queue("sync-d", wait=True, timeout=5)
        assert (status.name, status.paused, status.running) == ("sync-d", True, 0)
        assert client.queue_status("sync-d").paused is True
        assert client.resume_queue("sync-d") is True
        assert client.queue_status("sync-d").paused is False
        with pytest.raises(InvalidIdError, match="queue name"):
            client.drain_queue("not a queue")
