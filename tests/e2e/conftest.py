"""End-to-end fixtures: one real ``redis-server`` per session, real worker processes per test.

Every worker is a ``python -m durable_redis.runtime e2e_app:app`` subprocess, started with short
leases so crash tests finish quickly, and killed by its own pid at teardown. Each test gets its
own namespace on the shared server.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.e2e_helpers import WorkerPool


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)])
def e2e_redis_url(request: pytest.FixtureRequest, namespace: str) -> str:
    """The session's private redis-server (tests/conftest.py starts it), or (``cluster``) the
    session's local Redis Cluster, with the test's namespace created there with P = 8."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    import asyncio

    from durable_redis.storage.redis_store import RedisStore

    url = str(request.getfixturevalue("redis_cluster").url)

    async def create() -> None:
        store = RedisStore.from_url(url, namespace=namespace, partitions=8)
        try:
            await store.initialize()
        finally:
            await store.close()

    asyncio.run(create())
    return url


@pytest.fixture
def marker_dir(tmp_path: Path) -> Path:
    """Activities write files here (``started-...``), so tests can see them run."""
    d = tmp_path / "markers"
    d.mkdir()
    return d


@pytest.fixture
def workers(
    e2e_redis_url: str, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[WorkerPool]:
    pool = WorkerPool(e2e_redis_url, namespace, tmp_path)
    try:
        yield pool
    finally:
        pool.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            sys.stderr.write(pool.logs()[-20000:])


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
async def client(e2e_redis_url: str, namespace: str) -> AsyncIterator[Any]:
    from durable_redis.client import Client
    from tests.e2e import e2e_app

    async with Client.from_url(e2e_redis_url, namespace=namespace, app=e2e_app.app) as c:
        yield c
