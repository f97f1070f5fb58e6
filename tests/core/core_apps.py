"""Orchestrations shared by core tests and golden histories. Changing them breaks golden replay."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from durable_redis.core import ActivityContext, App, OrchestrationContext, RetryPolicy
from durable_redis.core.jobs import Limit
from durable_redis.errors import ActivityFailedError

app = App("golden")


@dataclass(frozen=True)
class Order:
    order_id: str
    items: list[str]
    amount: float


@dataclass(frozen=True)
class Receipt:
    order_id: str
    charged: float
    shipped: list[str]


@app.activity
def reserve(ctx: ActivityContext, items: list[str]) -> int:
    return len(items)


@app.activity
async def charge(ctx: ActivityContext, order: Order) -> float:
    return order.amount


@app.activity
def ship(ctx: ActivityContext, item: str) -> str:
    return f"shipped:{item}"


@app.activity
def flaky(ctx: ActivityContext, fail_until: int) -> int:
    if ctx.attempt < fail_until:
        raise ValueError(f"attempt {ctx.attempt} failed")
    return ctx.attempt


@app.activity
def always_fails(ctx: ActivityContext, message: str) -> None:
    raise KeyError(message)


@app.orchestration
async def checkout(ctx: OrchestrationContext, order: Order) -> Receipt:
    session = await ctx.open_session()
    await ctx.call_activity(reserve, order.items, session=session)
    charged = await ctx.call_activity(charge, order, retry=RetryPolicy(max_attempts=3))
    shipped = await asyncio.gather(*(ctx.call_activity(ship, i) for i in order.items))
    winner = await ctx.when_any([ctx.wait_for_event("approve"), ctx.sleep(timedelta(hours=1))])
    ctx.set_custom_status({"approved": winner.result() is not None})
    await ctx.close_session(session)
    return Receipt(order.order_id, charged, list(shipped))


@app.orchestration
async def retrying(ctx: OrchestrationContext, fail_until: int) -> int:
    policy = RetryPolicy(max_attempts=4, initial_delay=timedelta(seconds=2), backoff="linear")
    value = await ctx.call_activity(flaky, fail_until, retry=policy)
    try:
        await ctx.call_activity(always_fails, "nope")
    except ActivityFailedError as exc:
        return value * 100 + len(exc.type_name)
    return value  # pragma: no cover - always_fails raises


@app.orchestration
async def parent(ctx: OrchestrationContext, n: int) -> list[int]:
    results = await ctx.when_all([ctx.call_sub_orchestration(retrying, i + 1) for i in range(n)])
    ctx.start_orchestration(retrying, 1, instance_id=f"{ctx.instance_id}-detached")
    return results


@app.orchestration
async def counter(ctx: OrchestrationContext, n: int) -> int:
    if n == 0:
        return await ctx.call_activity(reserve, ["x"], session="s")
    if ctx.execution_id == 1:
        await ctx.open_session_with_id("s")
    await ctx.call_activity(ship, str(n), session="s")
    ctx.continue_as_new(n - 1)


@app.orchestration
async def structured(ctx: OrchestrationContext, items: list[str]) -> list[str]:
    out: list[str] = []
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_ship(ctx, i)) for i in items]
    out.extend(t.result() for t in tasks)
    try:
        async with asyncio.timeout(30):
            await ctx.wait_for_event("never")
    except TimeoutError:
        out.append("timed out")
    done, pending = await asyncio.wait(
        [ctx.call_activity(ship, "a"), ctx.wait_for_event("late")],
        return_when=asyncio.FIRST_COMPLETED,
    )
    for p in pending:
        p.cancel()
    out.append(str(len(done)))
    return out


async def _ship(ctx: OrchestrationContext, item: str) -> str:
    return await ctx.call_activity(ship, item)


@app.orchestration
async def steps(ctx: OrchestrationContext, _: None) -> int:
    session = await ctx.open_session_with_id("s1")
    a = await ctx.call_activity(reserve, ["a"], session=session)
    await asyncio.gather(ctx.call_activity(ship, "b"), ctx.call_activity(ship, "c"))
    await ctx.sleep(1)
    return a


@app.activity(queue="gpu")
def embed(ctx: ActivityContext, text: str) -> int:
    return len(text)


@app.orchestration
async def routed(ctx: OrchestrationContext, _: None) -> list[int]:
    """Queues and priorities recorded on ActivityScheduled / SessionOpened (docs/routing.md)."""
    gpu = await ctx.call_activity(embed, "abc")  # the registered queue
    here = await ctx.call_activity(embed, "de", queue="default", priority=5)  # overridden
    session = await ctx.open_session(queue="gpu")
    kept = await ctx.call_activity(reserve, ["x", "y"], session=session, priority=-1)
    first = await ctx.open_session()  # no queue: its first activity's queue fixes it
    fixed = await ctx.call_activity(embed, "f", session=first)
    await ctx.close_session(session)
    return [gpu, here, kept, fixed]


@app.activity(limit=Limit(key="tenant:{tenant}", concurrency=5))
def sync_tenant(ctx: ActivityContext, args: dict[str, str]) -> str:
    return args["tenant"]


@app.orchestration
async def limited(ctx: OrchestrationContext, _: None) -> list[str]:
    """Flow keys and limits recorded on ActivityScheduled (docs/routing.md): the registered
    limit's key from the input, a per-call rate limit, and none on a session."""
    a = await ctx.call_activity(sync_tenant, {"tenant": "t7"})  # registered: "tenant:t7", 5
    b = await ctx.call_activity(
        sync_tenant, {"tenant": "t8"}, limit=Limit(key="partner", rate=100, per=60, burst=10)
    )
    s = await ctx.open_session()
    c = await ctx.call_activity(sync_tenant, {"tenant": "t9"}, session=s)  # no limit here
    return [a, b, c]
