"""Flow control by key: a per-tenant concurrency limit, a rate limit on a partner API and a
debounced re-index for jobs; the same per-tenant limit on the activities an orchestration
calls; and a singleton orchestration start.

``sync_tenant`` runs at most 2 at once per tenant (a template key, ``tenant:{tenant}``), as a
job and as the activity ``sync_all`` fans out to; ``call_partner`` starts at most 10 per
second; ``reindex`` runs once, after a quiet period, with the last input it was given;
``nightly`` is a singleton per tenant: starting it again while it runs returns the running
instance. Two workers share the work; each activity notes when it ran, and the script checks
the limits from those notes. See docs/routing.md.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from _support import FAST, finish, in_process_worker, redis_url, unique_namespace

from durable_redis import ActivityContext, App, Client, Limit, OrchestrationContext

app = App("flow-control")
RUNS: list[tuple[str, str, float]] = []  # (what, key, time): both workers run in this process


@app.activity(limit=Limit(key="tenant:{tenant}", concurrency=2))
async def sync_tenant(ctx: ActivityContext, args: dict[str, Any]) -> None:
    RUNS.append(("start", args["tenant"], time.monotonic()))
    await anyio.sleep(0.05)
    RUNS.append(("end", args["tenant"], time.monotonic()))


@app.activity(limit=Limit(key="partner-api", rate=10, per=1, burst=2))
def call_partner(ctx: ActivityContext, n: int) -> float:
    return time.monotonic()


@app.activity(limit=Limit(key="search-index", debounce=0.3))
def reindex(ctx: ActivityContext, version: int) -> int:
    return version


@app.orchestration
async def sync_all(ctx: OrchestrationContext, tenants: list[str]) -> int:
    """Every call of sync_tenant at once: its registered limit holds them to 2 per tenant."""
    calls = [ctx.call_activity(sync_tenant, {"tenant": t}) for t in tenants]
    await ctx.when_all(calls)
    return len(calls)


@app.orchestration(limit=Limit(key="nightly:{tenant}", concurrency=1))
async def nightly(ctx: OrchestrationContext, args: dict[str, Any]) -> str:
    """At most one running per tenant (a singleton start)."""
    await ctx.sleep(0.3)
    return str(args["tenant"])


def most_at_once(key: str) -> int:
    now = peak = 0
    for what, k, _ in sorted(RUNS, key=lambda r: (r[2], r[0] == "start")):
        if k == key:
            now += 1 if what == "start" else -1
            peak = max(peak, now)
    return peak


async def main(url: str, namespace: str) -> dict[str, object]:
    out: dict[str, object] = {}
    async with (
        in_process_worker(app, url, namespace, FAST),
        in_process_worker(app, url, namespace, FAST),
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        jobs = await client.enqueue_many(
            sync_tenant, [{"tenant": t} for t in ("a", "b") for _ in range(8)]
        )
        for j in jobs:
            await j.result(timeout=20)
        out["peak"] = {t: most_at_once(t) for t in ("a", "b")}

        RUNS.clear()
        iid = await client.start(sync_all, [t for t in ("a", "b") for _ in range(8)])
        out["fanned_out"] = await client.wait_for_completion(iid, timeout=30)
        out["orchestration_peak"] = {t: most_at_once(t) for t in ("a", "b")}

        first = await client.start(nightly, {"tenant": "a"})
        again = await client.start(nightly, {"tenant": "a"})  # a runs: its id, nothing created
        out["singleton_kept"] = again == first
        await client.wait_for_completion(first, timeout=20)
        out["singleton_after"] = await client.start(nightly, {"tenant": "a"}) != first

        calls = await client.enqueue_many(call_partner, range(12))
        starts = sorted([await j.result(timeout=20) for j in calls])
        out["partner_span_s"] = round(starts[-1] - starts[0], 2)  # 12 at 10/s, 2 at once: ~1 s

        handles = []
        for version in range(1, 5):
            handles.append(await client.enqueue(reindex, version))
            await anyio.sleep(0.05)
        out["reindex_jobs"] = len({h.id for h in handles})
        out["reindexed"] = await handles[-1].result(timeout=20)
    return out


if __name__ == "__main__":
    with redis_url() as url:
        out = anyio.run(main, url, unique_namespace("flow"))
    print(out)
    ok = (
        out["peak"] == {"a": 2, "b": 2}
        and out["fanned_out"] == 16
        and out["orchestration_peak"] == {"a": 2, "b": 2}
        and out["singleton_kept"] is True
        and out["singleton_after"] is True
        and 0.8 <= float(out["partner_span_s"]) <= 2.0  # type: ignore[arg-type]
        and out["reindex_jobs"] == 1
        and out["reindexed"] == 4
    )
    finish(
        ok,
        "at most 2 per tenant (jobs and an orchestration's calls), a singleton start kept, "
        "12 partner calls at 10/s, 4 re-index requests ran once (the last)",
    )
