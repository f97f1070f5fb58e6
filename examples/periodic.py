"""A periodic job: do the work, sleep on a durable timer, continue as new; stop after 3 runs.

``continue_as_new`` starts a fresh execution with a new input, so the history never grows without
bound however long the job runs.
"""

from __future__ import annotations

from typing import Any

import anyio
from _support import finish, in_process_worker, redis_url, unique_namespace

from durable_redis import ActivityContext, App, Client, OrchestrationContext

app = App("periodic")

ITERATIONS = 3


@app.activity
def cleanup(ctx: ActivityContext, iteration: int) -> str:
    return f"run {iteration}: removed {iteration * 2} stale files"


@app.orchestration
async def nightly_cleanup(ctx: OrchestrationContext, state: dict[str, Any]) -> dict[str, Any]:
    iteration = state["iteration"]
    report = await ctx.call_activity(cleanup, iteration)
    reports = [*state["reports"], report]
    ctx.set_custom_status({"iteration": iteration, "execution": ctx.execution_id})
    if iteration >= ITERATIONS:
        return {"iterations": iteration, "reports": reports}
    await ctx.sleep(0.5)  # "until tomorrow night"
    ctx.continue_as_new({"iteration": iteration + 1, "reports": reports})


async def main(url: str) -> tuple[dict[str, Any], int, int]:
    namespace = unique_namespace("periodic")
    async with (
        in_process_worker(app, url, namespace),
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        instance_id = await client.start(nightly_cleanup, {"iteration": 1, "reports": []})
        result: dict[str, Any] = await client.wait_for_completion(instance_id, timeout=20)
        state = await client.get_status(instance_id)
        assert state is not None
        history = await client.get_history(instance_id)
        return result, state.execution_id, len(history)


if __name__ == "__main__":
    with redis_url() as url:
        result, execution_id, history_len = anyio.run(main, url)
    for line in result["reports"]:
        print(" ", line)
    print(f"final execution {execution_id}; its history has {history_len} events")
    finish(
        result["iterations"] == ITERATIONS and execution_id == ITERATIONS,
        f"{ITERATIONS} iterations in {execution_id} executions (continue-as-new)",
    )
