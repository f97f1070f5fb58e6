"""Human approval: wait for an "approval" event, but only until a durable timer fires.

Two requests run side by side: one is approved by a person (an event raised by the client) in
time; nobody answers the other, so its timer wins and the request is escalated.
"""

from __future__ import annotations

from typing import Any

import anyio
from _support import finish, in_process_worker, redis_url, unique_namespace

from durable_redis import ActivityContext, App, Client, OrchestrationContext

app = App("approval")

notified: list[str] = []


@app.activity
def notify_approver(ctx: ActivityContext, request: dict[str, Any]) -> None:
    notified.append(request["what"])


@app.activity
def escalate(ctx: ActivityContext, request: dict[str, Any]) -> str:
    return f"escalated {request['what']!r} to the manager"


@app.orchestration
async def approval(ctx: OrchestrationContext, request: dict[str, Any]) -> str:
    await ctx.call_activity(notify_approver, request)
    ctx.set_custom_status("waiting for approval")
    decision = ctx.wait_for_event("approval")
    deadline = ctx.sleep(request["timeout_seconds"])
    winner = await ctx.when_any([decision, deadline])
    if winner is decision:
        answer = decision.result()
        verdict = "approved" if answer["approved"] else "rejected"
        return f"{verdict} by {answer['by']}"
    return "timed out: " + await ctx.call_activity(escalate, request)


async def main(url: str) -> dict[str, str]:
    namespace = unique_namespace("approval")
    async with (
        in_process_worker(app, url, namespace),
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        answered = await client.start(
            approval, {"what": "buy a laptop", "timeout_seconds": 10}, instance_id="laptop"
        )
        ignored = await client.start(
            approval, {"what": "buy a yacht", "timeout_seconds": 1.5}, instance_id="yacht"
        )
        # The approver answers the laptop request once it is waiting (well before its timer).
        with anyio.fail_after(10):
            while True:
                state = await client.get_status(answered)
                if state is not None and state.custom_status == "waiting for approval":
                    break
                await anyio.sleep(0.05)
        await client.raise_event(answered, "approval", {"approved": True, "by": "alice"})
        return {
            answered: await client.wait_for_completion(answered, timeout=20),
            ignored: await client.wait_for_completion(ignored, timeout=20),
        }


if __name__ == "__main__":
    with redis_url() as url:
        outcomes = anyio.run(main, url)
    for instance_id, outcome in outcomes.items():
        print(f"  {instance_id}: {outcome}")
    finish(
        outcomes.get("laptop") == "approved by alice"
        and outcomes.get("yacht", "").startswith("timed out: escalated"),
        "one request approved in time, one timed out and escalated",
    )
