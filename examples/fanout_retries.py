"""Fan-out/fan-in with retries: price eight items in parallel against a flaky service.

The first two calls for every third item fail with a ConnectionError; a RetryPolicy retries them
after a short durable back-off timer, so the orchestration still sums all eight prices. Every
attempt is a separate activity in the history.
"""

from __future__ import annotations

import threading
from collections import Counter

import anyio
from _support import finish, in_process_worker, redis_url, unique_namespace

from durable_redis import (
    ActivityContext,
    App,
    Backoff,
    Client,
    OrchestrationContext,
    RetryPolicy,
)
from durable_redis.core import events

app = App("fanout")

ITEMS = [f"item-{i}" for i in range(8)]
PRICES = {item: 10 * (i + 1) for i, item in enumerate(ITEMS)}
FLAKY = set(ITEMS[::3])  # item-0, item-3, item-6 fail twice before they succeed

calls: Counter[str] = Counter()  # calls per item, in this (worker) process
calls_lock = threading.Lock()


@app.activity
def fetch_price(ctx: ActivityContext, item: str) -> int:
    with calls_lock:
        calls[item] += 1
        call = calls[item]
    if item in FLAKY and call <= 2:
        raise ConnectionError(f"price service unavailable for {item} (call {call})")
    return PRICES[item]


@app.orchestration
async def price_basket(ctx: OrchestrationContext, items: list[str]) -> int:
    retry = RetryPolicy(max_attempts=4, initial_delay=0.1, backoff=Backoff.FIXED)
    prices = await ctx.when_all(
        [ctx.call_activity(fetch_price, item, retry=retry) for item in items]
    )
    return sum(prices)


async def main(url: str) -> tuple[int, int]:
    namespace = unique_namespace("fanout")
    async with (
        in_process_worker(app, url, namespace),
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        instance_id = await client.start(price_basket, ITEMS)
        total: int = await client.wait_for_completion(instance_id, timeout=20)
        history = await client.get_history(instance_id)
    failures = sum(isinstance(e, events.ActivityFailed) for e in history)
    return total, failures


if __name__ == "__main__":
    with redis_url() as url:
        total, failures = anyio.run(main, url)
    for item in ITEMS:
        note = f" ({calls[item] - 1} transient failures, retried)" if calls[item] > 1 else ""
        print(f"  {item}: {calls[item]} call(s){note}")
    expected = sum(PRICES.values())
    print(f"total {total} (expected {expected}); {failures} failed attempts in the history")
    finish(
        total == expected and failures == 2 * len(FLAKY),
        f"fan-out of {len(ITEMS)} activities summed to {total} after {failures} retried failures",
    )
