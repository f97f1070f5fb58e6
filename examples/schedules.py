"""Schedules: an activity run as a job on a fixed interval or a cron expression, in a time zone,
with no scheduler process: every worker races for each tick and exactly one wins (the claim is
one Lua script on the Redis clock, the job enqueued in the same script).

Two workers serve one schedule declared in code (every second) and one created at run time
(a cron expression, paused, triggered by hand); then the first is paused and resumed.
"""

from __future__ import annotations

import threading
from collections import Counter

import anyio
from _support import finish, in_process_worker, redis_url, unique_namespace

from durable_redis import ActivityContext, App, Client

app = App("schedules")

ticks: Counter[str] = Counter()  # job id -> runs, in this process (both workers)
lock = threading.Lock()


@app.schedule(every=1, input="heartbeat", name="heartbeat")
@app.activity
def ping(ctx: ActivityContext, label: str) -> str:
    with lock:
        ticks[ctx.job_id or ""] += 1
    return label


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
            print(f"  {s.name}: {s.activity} {when} ({s.timezone}), next {s.next_run_at}")
        out["schedules"] = sorted(s.name for s in await client.list_schedules())
        await client.delete_schedule("nightly")
    out["ticks"] = len(ticks)
    out["max_runs_per_tick"] = max(ticks.values())
    return out


if __name__ == "__main__":
    with redis_url() as url:
        out = anyio.run(main, url)
    for key, value in out.items():
        print(f"  {key}: {value}")
    ok = (
        out["max_runs_per_tick"] == 1
        and out["ran_while_paused"] == 0
        and out["triggered"] == "report for infra"
        and out["schedules"] == ["heartbeat", "nightly"]
    )
    finish(ok, "every tick ran once across 2 workers; paused, resumed, triggered")
