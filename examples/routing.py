"""Routing jobs: a "gpu" worker pool and a "default" one, and pausing a queue.

``embed`` is registered on the "gpu" queue, ``thumbnail`` on "default"; one worker serves only
"gpu", the other only "default", and each job runs where its queue says. Then "default" is
paused: its new jobs stay queued (none lost, the gpu pool keeps working) until it is resumed.
See docs/routing.md.
"""

from __future__ import annotations

import dataclasses

import anyio
from _support import FAST, finish, in_process_worker, redis_url, unique_namespace

from durable_redis import ActivityContext, App, Client, JobState

app = App("routing")


@app.activity(queue="gpu")
def embed(ctx: ActivityContext, text: str) -> str:
    return ctx.worker_id


@app.activity  # queue "default"
def thumbnail(ctx: ActivityContext, image: str) -> str:
    return ctx.worker_id


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

        await client.pause_queue("default")
        held = await client.enqueue_many(thumbnail, ["a.png", "b.png", "c.png"])
        after = await client.enqueue(embed, "still running")  # the gpu pool is not paused
        out["gpu_while_paused"] = await after.result(timeout=10)
        out["held"] = {(await j.status()).state for j in held}
        out["queues"] = {q.name: (q.ready, q.paused) for q in await client.list_queues()}
        await client.resume_queue("default")
        out["resumed"] = {await j.result(timeout=10) for j in held}
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
    )
    finish(
        ok,
        "6 embeddings on the gpu pool, 6 thumbnails on the cpu pool; "
        "3 held by a pause ran after resume",
    )
