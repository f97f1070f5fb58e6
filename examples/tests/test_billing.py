"""A month of waiting in well under a second, and an activity replaced for one test."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from shop import monthly_invoice, send_invoice

from durable_redis.testing import TestEnvironment

pytestmark = [pytest.mark.anyio, pytest.mark.durable_app("shop:app")]


async def test_a_thirty_day_sleep_completes_in_under_a_second(durable_env: TestEnvironment) -> None:
    client = durable_env.client
    started_wall, started_virtual = time.monotonic(), await durable_env.now()
    handle = await client.start(monthly_invoice, "acme")
    assert await client.wait_for_completion(handle, timeout=10) == "invoice sent to acme"
    assert time.monotonic() - started_wall < 1.0
    assert await durable_env.now() - started_virtual >= timedelta(days=30)


async def test_skipping_by_hand(durable_env: TestEnvironment) -> None:
    durable_env.auto_skip = False  # the clock moves only when the test says so
    client = durable_env.client
    handle = await client.start(monthly_invoice, "acme")
    await durable_env.run_until_idle()  # its first turn has run: the timer is set
    await durable_env.skip(timedelta(days=29))
    await durable_env.run_until_idle()
    assert (await client.get_status(handle)).status.value == "running"
    await durable_env.skip(timedelta(days=1))
    assert await client.wait_for_completion(handle, timeout=10) == "invoice sent to acme"


async def test_the_mail_provider_is_mocked(durable_env: TestEnvironment) -> None:
    sent: list[str] = []

    def fake_send(ctx: object, customer: str) -> str:
        sent.append(customer)
        return "mocked"

    with durable_env.mock_activity(send_invoice, fake_send):
        handle = await durable_env.client.start(monthly_invoice, "acme")
        assert await durable_env.client.wait_for_completion(handle, timeout=10) == "mocked"
    assert sent == ["acme"]


@pytest.mark.durable_app("shop:app", backend="fakeredis")
async def test_the_same_on_fakeredis(durable_env: TestEnvironment) -> None:
    with durable_env.mock_activity("send_invoice", returns="from a mock"):
        handle = await durable_env.client.start(monthly_invoice, "acme")
        assert await durable_env.client.wait_for_completion(handle, timeout=10) == "from a mock"
