"""Routing: a "gpu" worker pool and a "default" one, a session on the gpu pool, priorities,
pausing and draining a queue.

``embed`` is registered on the "gpu" queue, ``thumbnail`` on "default"; one worker serves only
"gpu", the other only "default", and each job runs where its queue says. An orchestration opens
a session on "gpu": its model is loaded once by one gpu worker and every chunk is embedded
there, while its ``thumbnail`` calls (one with a priority) run on the cpu pool. Then "default"
is paused: its new jobs stay queued (none lost, the gpu pool keeps working) until it is resumed;
"gpu" is drained (paused once its running work ended) and resumed. Flow control by key:
``render`` runs at most 2 at once per tenant, ``notify_partner`` at most 10 per second
(examples/flow_control.py has more). See docs/routing.md.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import anyio
from _support import FAST, finish, in_process_worker, redis_url, unique_namespace

from durable_redis import ActivityContext, App, Client, JobState, Limit, OrchestrationContext

app = App("routing")


@app.activity(queue="gpu")
def embed(ctx: ActivityContext, text: str) -> str:
    return ctx.worker_id


@app.activity  # queue "default"
def thumbnail(ctx: ActivityContext, image: str) -> str:
    return ctx.worker_id


_running: Counter[str] = Counter()  # jobs of each tenant running now (one process here)
_peak: Counter[str] = Counter()


@app.activity(limit=Limit(key="tenant:{tenant}", concurrency=2))  # at most 2 per tenant
async def render(ctx: ActivityContext, job: dict[str, str]) -> None:
    tenant = job["tenant"]
    _running[tenant] += 1
    _peak[tenant] = max(_peak[tenant], _running[tenant])
    await anyio.sleep(0.05)
    _running[tenant] -= 1


@app.activity(limit=Limit(key="partner-api", rate=10, per=1, burst=2))  # 10 per second
def notify_partner(ctx: ActivityContext, n: int) -> float:
    return time.monotonic()


_models: dict[str, str] = {}  # per worker process: the model each session loaded here


@app.activity
def load_model(ctx: ActivityContext, name: str) -> str:
    _models[f"{ctx.instance_id}/{ctx.session_id}"] = name
    return ctx.worker_id


@app.activity
def embed_chunk(ctx: ActivityContext, chunk: str) -> str:
    model = _models[f"{ctx.instance_id}/{ctx.session_id}"]  # loaded by this same worker
    return f"{ctx.worker_id}:{model}"


@app.orchestration
async def index_document(ctx: OrchestrationContext, chunks: list[str]) -> dict[str, object]:
    session = await ctx.open_session(queue="gpu")  # claimed only by a worker serving "gpu"
    loaded_on = await ctx.call_activity(load_model, "mini-embed", session=session)
    vectors = [await ctx.call_activity(embed_chunk, c, session=session) for c in chunks]
    await ctx.close_session(session)
    cover = await ctx.call_activity(thumbnail, "cover.png", priority=10)  # first in "default"
    return {"loaded_on": loaded_on, "embedded_on": sorted(set(vectors)), "cover": cover}


async def main(url: str, namespace: str) -> dict[str, object]:
    gpu = dataclasses.replace(FAST, queues=("gpu",), worker_id="gpu-pool-1")
    cpu = dataclasses.replace(FAST, queues=("default",), worker_id="cpu-pool-1")
    out: dict[str, object] = {}
    async with (
        in_process_worker(app, url, namespace, gpu),
        in_process_worker(app, url, namespace, cpu),
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        embeds = await client.enqueue_many(embed, [f"text {i}" for i in range(6)])
        thumbs = await client.enqueue_many(thumbnail, [f"img{i}.png" for i in range(6)])
        out["embed"] = {await j.result(timeout=10) for j in embeds}
        out["thumb"] = {await j.result(timeout=10) for j in thumbs}
        iid = await client.start(index_document, [f"chunk {i}" for i in range(4)])
        out["document"] = await client.wait_for_completion(iid, timeout=20)
        renders = await client.enqueue_many(render, [{"tenant": t} for t in "ab" * 6])
        for j in renders:
            await j.result(timeout=20)
        out["tenant_peak"] = dict(_peak)
        calls = await client.enqueue_many(notify_partner, range(12))
        starts = sorted([await j.result(timeout=20) for j in calls])
        out["partner_span_s"] = round(starts[-1] - starts[0], 2)  # 2 at once, then 10/s

        await client.pause_queue("default")
        held = await client.enqueue_many(thumbnail, ["a.png", "b.png", "c.png"])
        after = await client.enqueue(embed, "still running")  # the gpu pool is not paused
        out["gpu_while_paused"] = await after.result(timeout=10)
        out["held"] = {(await j.status()).state for j in held}
        out["queues"] = {q.name: (q.ready, q.paused) for q in await client.list_queues()}
        await client.resume_queue("default")
        out["resumed"] = {await j.result(timeout=10) for j in held}
        drained = await client.drain_queue("gpu", wait=True, timeout=10)
        out["drained"] = (drained.paused, drained.running)
        await client.resume_queue("gpu")
    return out


if __name__ == "__main__":
    with redis_url() as url:
        out = anyio.run(main, url, unique_namespace("routing"))
    print(out)
    ok = (
        out["embed"] == {"gpu-pool-1"}
        and out["thumb"] == {"cpu-pool-1"}
        and out["gpu_while_paused"] == "gpu-pool-1"
        and out["held"] == {JobState.QUEUED}
        and out["queues"] == {"default": (3, True), "gpu": (0, False)}
        and out["resumed"] == {"cpu-pool-1"}
        and out["document"]
        == {
            "loaded_on": "gpu-pool-1",
            "embedded_on": ["gpu-pool-1:mini-embed"],
            "cover": "cpu-pool-1",
        }
        and out["drained"] == (True, 0)
        and out["tenant_peak"] == {"a": 2, "b": 2}
        and 0.8 <= float(out["partner_span_s"]) <= 2.5  # type: ignore[arg-type]
    )
    finish(
        ok,
        "6 embeddings on the gpu pool, 6 thumbnails on the cpu pool; a gpu session kept its "
        "worker; 3 held by a pause ran after resume; gpu drained; at most 2 per tenant, "
        "12 partner calls at 10/s",
    )
