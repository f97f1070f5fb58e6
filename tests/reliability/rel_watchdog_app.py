"""The app of the turn-watchdog tests (``rel_watchdog_app:app``): orchestrations whose code
spins forever or kills its worker, and a plain one that must keep completing beside them."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from durable_redis.core import ActivityContext, App, OrchestrationContext

app = App("relwd")


def _log(directory: str, name: str, line: str) -> None:
    fd = os.open(Path(directory) / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@app.activity
def step(ctx: ActivityContext, i: int) -> int:
    return i


@app.orchestration
async def steps(ctx: OrchestrationContext, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.call_activity(step, i)
    return total


@app.orchestration
async def spin(ctx: OrchestrationContext, args: dict[str, Any]) -> None:
    """Spins in its first turn (a bug: a busy wait in orchestration code)."""
    _log(args["dir"], "spins.log", f"{os.getpid()} {time.time()}")
    while True:
        pass


@app.orchestration
async def exit_hard(ctx: OrchestrationContext, args: dict[str, Any]) -> None:
    """Kills its worker in its first turn (``os._exit``: no finally, no hand-back)."""
    _log(args["dir"], "exits.log", f"{os.getpid()} {time.time()}")
    os._exit(17)
