"""The app of the routing e2e tests (``e2e_routing_app:app``): activities that report the pid
of the process that ran them; ``gpu_work`` is registered on the "gpu" queue. ``hold`` blocks
until the test writes ``release-<name>`` in ``dir`` (a ``started-<name>`` marker first)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

from durable_redis.core import ActivityContext, App

app = App("e2e-routing")


@app.activity(queue="gpu")
def gpu_work(ctx: ActivityContext, n: int) -> dict[str, Any]:
    return {"pid": os.getpid(), "n": n}


@app.activity
def cpu_work(ctx: ActivityContext, n: int) -> dict[str, Any]:
    return {"pid": os.getpid(), "n": n}


@app.activity(queue="gpu")
async def hold(ctx: ActivityContext, args: dict[str, Any]) -> dict[str, Any]:
    d = Path(args["dir"])
    (d / f"started-{args['name']}").touch()
    while not (d / f"release-{args['name']}").exists():
        await anyio.sleep(0.05)
    return {"pid": os.getpid()}
