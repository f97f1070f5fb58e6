"""Fixtures of the reliability suite: real worker processes, real ``redis-server``s, faults.

Worker processes come from the e2e suite's ``WorkerPool`` (``tests/e2e/e2e_helpers.py``); this
directory is put on their ``PYTHONPATH`` so they can serve ``rel_app:app``. Every process a test
starts (workers, private Redis servers) is stopped by its own pid at teardown.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.e2e_helpers import WorkerPool

HERE = Path(__file__).resolve().parent


@pytest.fixture
def rel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes started by WorkerPool inherit this PYTHONPATH (for ``rel_app``)."""
    import os

    current = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(HERE), current) if p))


@pytest.fixture
def pools(rel_env: None, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``pools(url, namespace)`` makes a WorkerPool; every pool is killed at teardown."""
    made: list[WorkerPool] = []

    def make(url: str, namespace: str) -> WorkerPool:
        sub = tmp_path / f"pool-{len(made)}"
        sub.mkdir()
        pool = WorkerPool(url, namespace, sub)
        made.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in made:
            pool.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for pool in made:
                sys.stderr.write(pool.logs()[-20000:])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture
async def rel_client(redis_url: str, namespace: str) -> AsyncIterator[Any]:
    from durable_redis.client import Client
    from tests.reliability import rel_app

    async with Client.from_url(redis_url, namespace=namespace, app=rel_app.app) as c:
        yield c


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
