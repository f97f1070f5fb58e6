"""Fixtures of the in-process runtime tests: a task group to run workers in, short leases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest

from durable_redis.runtime import WorkerOptions

# Short leases and waits: a stopped worker's work moves within ~2 s, a stop is noticed at once.
FAST_OPTIONS = WorkerOptions(
    lock_timeout=2.0,
    session_lock_timeout=2.0,
    renewal_interval=0.5,
    fetch_wait=0.2,
    shutdown_grace_period=1.0,
    janitor_interval=None,
    unregistered_backoff=0.2,
    unregistered_backoff_max=0.5,
)


@pytest.fixture
def fast_options() -> WorkerOptions:
    return FAST_OPTIONS


@pytest.fixture
async def task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """Workers started here are cancelled at teardown (tests stop them first when they can)."""
    async with anyio.create_task_group() as group:
        yield group
        group.cancel_scope.cancel()
