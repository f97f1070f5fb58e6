"""Fixtures of these example tests (the durable_env / durable_client fixtures come from the
durable-redis pytest plugin, installed with the package)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import shop


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the engine runs on asyncio (redis-py's asyncio client)


@pytest.fixture(autouse=True)
def fresh_gateway() -> Iterator[shop.FakeGateway]:
    shop.gateway = shop.FakeGateway()
    yield shop.gateway
