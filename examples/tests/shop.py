"""The app the tests in this folder test: a subscription shop (what a user's own module is).

A fake payment gateway stands in for the real one, so a test can count the charges.
"""

from __future__ import annotations

from datetime import timedelta

from durable_redis import ActivityContext, App, OrchestrationContext

app = App("shop")


class FakeGateway:
    """Records every charge, like a payment provider's dashboard would."""

    def __init__(self) -> None:
        self.charges: list[str] = []  # one entry per charge made
        self.by_key: dict[str, str] = {}  # idempotency key -> customer (keyed charges)

    def charge(self, customer: str) -> int:
        self.charges.append(customer)
        return len(self.charges)

    def charge_once(self, key: str, customer: str) -> int:
        if key not in self.by_key:  # what Stripe's Idempotency-Key header does
            self.by_key[key] = customer
            self.charges.append(customer)
        return len(self.charges)


gateway = FakeGateway()


@app.activity
def send_invoice(ctx: ActivityContext, customer: str) -> str:
    return f"invoice sent to {customer}"  # the real one calls the mail provider


@app.activity
def charge_card(ctx: ActivityContext, customer: str) -> int:
    """NOT idempotent: delivered twice, it charges twice."""
    return gateway.charge(customer)


@app.activity
def charge_card_idempotent(ctx: ActivityContext, customer: str) -> int:
    """Idempotent: the key is the same on every delivery of this call."""
    return gateway.charge_once(ctx.idempotency_key, customer)


@app.orchestration
async def monthly_invoice(ctx: OrchestrationContext, customer: str) -> str:
    await ctx.sleep(timedelta(days=30))
    return await ctx.call_activity(send_invoice, customer)


@app.orchestration
async def checkout(ctx: OrchestrationContext, customer: str) -> int:
    return await ctx.call_activity(charge_card, customer)


@app.orchestration
async def checkout_idempotent(ctx: OrchestrationContext, customer: str) -> int:
    return await ctx.call_activity(charge_card_idempotent, customer)
