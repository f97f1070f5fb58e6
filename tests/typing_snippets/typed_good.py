"""Typed use of the public API: ``mypy --strict`` must accept it and infer what is asserted.

Checked by ``tests/test_typing.py`` (never imported by the suite).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, assert_type

from durable_redis import (
    ActivityContext,
    App,
    Client,
    InstanceHandle,
    InstanceId,
    InstanceState,
    OrchestrationContext,
)

app = App("typed")


@dataclass(frozen=True)
class Receipt:
    amount: int


@app.activity
def charge(ctx: ActivityContext, amount: int) -> Receipt:
    return Receipt(amount)


@app.activity
async def charge_async(ctx: ActivityContext, amount: int) -> Receipt:
    return Receipt(amount)


@app.activity
def no_input(ctx: ActivityContext) -> int:
    return 1


@app.orchestration
async def child(ctx: OrchestrationContext) -> bool:
    return True


@app.orchestration
async def pay(ctx: OrchestrationContext, amount: int) -> str:
    assert_type(await ctx.call_activity(charge, amount), Receipt)
    assert_type(await ctx.call_activity(charge_async, amount), Receipt)
    assert_type(await ctx.call_local_activity(charge, amount), Receipt)
    assert_type(await ctx.call_local_activity(no_input), int)
    assert_type(await ctx.call_activity(no_input), int)
    assert_type(await ctx.call_activity("by-name", {"any": "input"}), Any)
    assert_type(await ctx.call_sub_orchestration(child), bool)
    receipts = await ctx.when_all([ctx.call_activity(charge, 1), ctx.call_activity(charge, 2)])
    assert_type(receipts, list[Receipt])
    first = await ctx.when_any([ctx.call_activity(charge, 1), ctx.call_activity(charge, 2)])
    assert_type(first, asyncio.Future[Receipt])
    approval = ctx.wait_for_event("approve", bool)
    winner = await ctx.when_any([approval, ctx.sleep(3600)])  # mixed types: Future[Any]
    return "approved" if winner is approval else "timed out"


async def use_client(client: Client) -> None:
    instance_id = await client.start(pay, 5)
    assert_type(instance_id, InstanceId[str])
    assert_type(await client.wait_for_completion(instance_id), str)
    assert_type(await client.wait_for_completion("some-id"), Any)
    assert_type(await client.wait_for_completion("some-id", result_type=Receipt), Receipt)
    assert_type(await client.start(child), InstanceId[bool])
    assert_type(await client.start("pay", "anything"), InstanceId[Any])
    handle = await client.start(pay, 5)
    assert_type(handle, InstanceHandle[str])
    assert_type(await handle.result(), str)
    assert_type(await handle.state(), InstanceState | None)
    assert_type(handle.id, str)
