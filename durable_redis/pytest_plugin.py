"""pytest fixtures for testing durable_redis apps (registered through the ``pytest11`` entry
point, so installing durable-redis is enough; docs/testing.md "The pytest plugin").

- ``durable_env``: a :class:`~durable_redis.testing.TestEnvironment` for the test, serving the
  app named by the ``durable_app`` marker or fixture; its options come from the marker's
  keywords (``backend="fakeredis"``, ``workers=2``, ``auto_skip=False``, ...).
- ``durable_client``: ``durable_env.client``.
- ``durable_redis_server`` (session): one embedded ``redis-server`` (AOF on) the environments
  of a run share, each on a namespace of its own; ``own_redis=True`` on the marker gives a test
  a private server instead (``env.restart_redis()`` needs one).

::

    pytestmark = [pytest.mark.anyio, pytest.mark.durable_app("myapp.workflows:app")]

    async def test_invoice(durable_client):
        handle = await durable_client.start(monthly_invoice, "acme")
        assert await durable_client.wait_for_completion(handle, timeout=10) == "sent"

Async tests need an async runner: the ``anyio`` plugin (``pytest.mark.anyio``) ships with anyio.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from durable_redis._testenv import TestEnvironment
    from durable_redis.client import Client
    from durable_redis.core import App
    from durable_redis.devtools.server import RedisServer

__all__ = [
    "durable_app",
    "durable_client",
    "durable_env",
    "durable_redis_server",
    "resolve_app",
]

MARKER = "durable_app"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(app, **options): the App (or 'module:attribute') the durable_env fixture "
        "serves, and TestEnvironment options (backend=, workers=, auto_skip=, own_redis=...)",
    )


def resolve_app(spec: Any) -> App:
    """An App, or ``"package.module:attribute"`` naming one."""
    if isinstance(spec, str):
        module, sep, attribute = spec.partition(":")
        if not sep:
            raise pytest.UsageError(f"durable_app {spec!r}: expected 'module:attribute'")
        try:
            spec = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise pytest.UsageError(f"durable_app {spec!r}: {exc}") from exc
    from durable_redis.core import App

    if not isinstance(spec, App):
        raise pytest.UsageError(f"durable_app: {spec!r} is not a durable_redis App")
    return spec


def _marker(request: pytest.FixtureRequest) -> pytest.Mark | None:
    node: pytest.Item = request.node
    return node.get_closest_marker(MARKER)


@pytest.fixture
def durable_app(request: pytest.FixtureRequest) -> App:
    """The app under test: from ``@pytest.mark.durable_app(app)``; or override this fixture."""
    marker = _marker(request)
    if marker is None or not marker.args:
        raise pytest.UsageError(
            "durable_env needs an app: mark the test @pytest.mark.durable_app(app) "
            "(or 'module:attribute'), or define a durable_app fixture returning it"
        )
    return resolve_app(marker.args[0])


@pytest.fixture(scope="session")
def durable_redis_server() -> Iterator[RedisServer]:
    """One embedded redis-server (AOF on) for the whole run, stopped by its pid at the end."""
    from durable_redis.devtools.server import RedisServer

    with RedisServer(persistence=True) as server:
        yield server


@pytest.fixture
async def durable_env(
    request: pytest.FixtureRequest, durable_app: App
) -> AsyncIterator[TestEnvironment]:
    """A TestEnvironment serving ``durable_app``, closed after the test."""
    from durable_redis._testenv import TestEnvironment

    marker = _marker(request)
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    own = options.pop("own_redis", False)
    if options.get("backend", "redis") == "redis" and not own and "redis_url" not in options:
        options["redis_url"] = request.getfixturevalue("durable_redis_server").url
    async with TestEnvironment(durable_app, **options) as env:
        yield env


@pytest.fixture
def durable_client(durable_env: TestEnvironment) -> Client:
    """``durable_env.client``: a Client whose result waits let the virtual clock skip."""
    return durable_env.client
