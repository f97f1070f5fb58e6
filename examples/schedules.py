"""Schedules: an activity run as a job, or an orchestration started, on a fixed interval or a
cron expression, in a time zone, with no scheduler process: every worker races for each tick
and exactly one wins (the claim is one Lua script on the Redis clock, the job enqueued or the
instance created in the same script).

Two workers serve two schedules declared in code (an activity every second, an orchestration
every second whose instances are ``rollup@<tick ms>``) and one created at run time (a cron
expression, triggered by hand); the first is paused and resumed.
"""

from __future__ import annotations

import threading
from collections import Counter

import anyio
from _support import finish, in_process_worker, redis_url, unique_namespace

from durable_redis import ActivityContext, App, Client, OrchestrationContext

app = App("schedules")

ticks: Counter[str] = Counter()  # job id -> runs, in this process (both workers)
lock = threading.Lock()


@app.schedule(every=1, input="heartbeat", name="heartbeat")
@app.activity
def ping(ctx: ActivityContext, label: str) -> str:
    with lock:
        ticks[ctx.job_id or ""] += 1
    return label


@app.schedule(every=1, input=3, name="rollup")  # each tick starts one instance
@app.orchestration
async def rollup(ctx: OrchestrationContext, n: int) -> int:
    return sum([await ctx.call_activity(square, i) for i in range(n)])


@app.activity
def square(ctx: ActivityContext, i: int) -> int:
    return i * i


@app.activity
def nightly_report(ctx: ActivityContext, team: str) -> str:
    return f"report for {team}"


async def main(url: str) -> dict[str, object]:
    namespace = unique_namespace("schedules")
    out: dict[str, object] = {}
    async with (
        in_process_worker(app, url, namespace),
        in_process_worker(app, url, namespace),  # a second worker: still one run per tick
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        await client.create_schedule(
            "nightly", nightly_report, "infra", cron="30 2 * * *", timezone="Europe/Paris"
        )
        with anyio.fail_after(20):
            while len(ticks) < 3:
                await anyio.sleep(0.05)
        await client.pause_schedule("heartbeat")
        await anyio.sleep(0.3)  # a tick claimed just before the pause may still be running
        paused_at = len(ticks)
        await anyio.sleep(1.5)
        out["ran_while_paused"] = len(ticks) - paused_at
        await client.resume_schedule("heartbeat")
        with anyio.fail_after(10):
            while len(ticks) < paused_at + 1:
                await anyio.sleep(0.05)
        job = await client.trigger_schedule("nightly")
        out["triggered"] = await job.result(timeout=10)
        for s in await client.list_schedules():
            when = s.cron or f"every {s.every}"
            what = f"{s.target} {s.orchestration or s.activity}"
            print(f"  {s.name}: {what} {when} ({s.timezone}), next {s.next_run_at}")
        out["schedules"] = sorted(s.name for s in await client.list_schedules())
        await client.delete_schedule("nightly")
        with anyio.fail_after(20):
            while len(rollups := await _rollups(client)) < 2:
                await anyio.sleep(0.05)
        await client.delete_schedule("rollup")
        rollups = await _rollups(client)
        results = [await client.wait_for_completion(i, timeout=20) for i in rollups]
        out["rollup_results"] = sorted(set(results))
        out["rollup_ids_unique_per_tick"] = len({i.split("@")[1] for i in rollups}) == len(rollups)
    out["ticks"] = len(ticks)
    out["max_runs_per_tick"] = max(ticks.values())
    return out


async def _rollups(client: Client) -> list[str]:
    page = await client.list_instances(name="rollup", limit=1000)
    return [i.instance_id for i in page.instances]


if __name__ == "__main__":
    with redis_url() as url:
        out = anyio.run(main, url)
    for key, value in out.items():
        print(f"  {key}: {value}")
    ok = (
        out["max_runs_per_tick"] == 1
        and out["ran_while_paused"] == 0
        and out["triggered"] == "report for infra"
        and out["schedules"] == ["heartbeat", "nightly", "rollup"]
        and out["rollup_results"] == [5]
        and out["rollup_ids_unique_per_tick"] is True
    )
    finish(
        ok,
        "every tick ran once across 2 workers; paused, resumed, triggered; "
        "an orchestration started once per tick",
    )
