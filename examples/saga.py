"""A saga: book a trip in three steps; if a step fails, undo the earlier ones in reverse order.

Two trips run: one pays with a good card and completes; the other's card is declined, so the
hotel and then the flight are cancelled (compensations are durable activities too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from _support import finish, in_process_worker, redis_url, unique_namespace

from durable_redis import (
    ActivityContext,
    App,
    Client,
    OrchestrationContext,
    RetryPolicy,
    TaskFailedError,
)

app = App("saga")

log: list[str] = []  # side effects, in the order they happened (in this worker process)


class CardDeclined(Exception):
    pass


@app.activity
def reserve_flight(ctx: ActivityContext, trip: dict[str, Any]) -> str:
    log.append(f"{trip['who']}: flight reserved")
    return f"FL-{trip['who']}"


@app.activity
def cancel_flight(ctx: ActivityContext, booking: str) -> None:
    log.append(f"{booking.removeprefix('FL-')}: flight cancelled")


@app.activity
def reserve_hotel(ctx: ActivityContext, trip: dict[str, Any]) -> str:
    log.append(f"{trip['who']}: hotel reserved")
    return f"HO-{trip['who']}"


@app.activity
def cancel_hotel(ctx: ActivityContext, booking: str) -> None:
    log.append(f"{booking.removeprefix('HO-')}: hotel cancelled")


@app.activity
def charge_card(ctx: ActivityContext, trip: dict[str, Any]) -> str:
    if trip["card"] == "declined":
        raise CardDeclined(f"card of {trip['who']} was declined")
    log.append(f"{trip['who']}: card charged")
    return f"PAY-{trip['who']}"


@app.orchestration
async def book_trip(ctx: OrchestrationContext, trip: dict[str, Any]) -> dict[str, Any]:
    # A declined card is final: do not retry it.
    no_retry = RetryPolicy(max_attempts=3, initial_delay=0.1, non_retryable=("CardDeclined",))
    compensations: list[tuple[Callable[..., Any], str]] = []
    try:
        flight = await ctx.call_activity(reserve_flight, trip)
        compensations.append((cancel_flight, flight))
        hotel = await ctx.call_activity(reserve_hotel, trip)
        compensations.append((cancel_hotel, hotel))
        payment = await ctx.call_activity(charge_card, trip, retry=no_retry)
        return {"status": "booked", "bookings": [flight, hotel, payment]}
    except TaskFailedError as exc:
        undone = []
        for compensate, booking in reversed(compensations):
            await ctx.call_activity(compensate, booking)
            undone.append(booking)
        return {"status": "rolled back", "reason": exc.details.message, "undone": undone}


async def main(url: str) -> dict[str, Any]:
    namespace = unique_namespace("saga")
    async with (
        in_process_worker(app, url, namespace),
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        results = {}
        for who, card in (("ann", "ok"), ("ben", "declined")):
            instance_id = await client.start(book_trip, {"who": who, "card": card})
            results[who] = await client.wait_for_completion(instance_id, timeout=20)
        return results


if __name__ == "__main__":
    with redis_url() as url:
        results = anyio.run(main, url)
    print("side effects, in order:")
    for line in log:
        print("   ", line)
    for who, result in results.items():
        print(f"  {who}: {result}")
    ben = [line for line in log if line.startswith("ben:")]
    finish(
        results["ann"]["status"] == "booked"
        and results["ben"]["status"] == "rolled back"
        and ben
        == [
            "ben: flight reserved",
            "ben: hotel reserved",
            "ben: hotel cancelled",
            "ben: flight cancelled",
        ],
        "ann's trip booked; ben's card declined, hotel then flight compensated",
    )
