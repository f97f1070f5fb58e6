"""Replay cost: build a 10,000-event history, then time replaying it from scratch.

    .venv/bin/python benchmarks/replay_bench.py [--events 10000] [--repeat 3]

Prints events/s for (a) decoding the stored bytes, (b) a full replay (what every turn of a long
orchestration pays) and (c) a turn on top of the history that schedules one more step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from durable_redis.core import (
    ActivityContext,
    App,
    OrchestrationContext,
    decode_event,
    encode_event,
    replay,
    run_turn,
)
from durable_redis.core import events as ev
from durable_redis.testing import InMemoryRunner

app = App("bench")


@app.activity
def step(ctx: ActivityContext, i: int) -> int:
    return i


@app.orchestration
async def long_running(ctx: OrchestrationContext, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.call_activity(step, i)
    return total


def build(events: int) -> list[ev.HistoryEvent]:
    n = (events - 2) // 2  # started + n * (scheduled, completed) + completed
    runner = InMemoryRunner(app)
    runner.start(long_running, n)
    runner.run()
    history = runner.instances["i"].history
    assert isinstance(history[-1], ev.OrchestrationCompleted)
    return history


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    history = build(args.events)
    encoded = [encode_event(e) for e in history]
    print(f"history: {len(history)} events, {sum(map(len, encoded))} bytes encoded")

    def best(fn: object) -> float:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - t0)
        return min(times)

    decode_s = best(lambda: [decode_event(b) for b in encoded])
    replay_s = best(lambda: replay(app, history))
    result = replay(app, history)
    assert result.ok and result.events_replayed == len(history)
    open_history = history[:-2]  # last activity still in flight
    turn_s = best(lambda: run_turn(app, "i", open_history, [], now_ms=0))
    n = len(history)
    print(f"decode:      {n / decode_s:>12,.0f} events/s  ({decode_s * 1000:.1f} ms)")
    print(f"full replay: {n / replay_s:>12,.0f} events/s  ({replay_s * 1000:.1f} ms)")
    print(f"turn:        {len(open_history) / turn_s:>12,.0f} events/s  ({turn_s * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
