"""A session-pinned conversation that survives the death of the worker holding it.

The orchestration opens a session and handles each user message (an external event) with
``chat_turn`` on that session, so every turn runs on the one worker process that holds the
session and can keep the conversation warm in memory. Two worker processes run; after turn 3 the
script kills the session's owner with SIGKILL. Once its session lease (1 s here) expires the other
worker claims the session: its first turn finds no warm state and rebuilds it from the durable
transcript the orchestration passes along, and later turns are warm again on the new owner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import anyio
from _support import finish, redis_url, unique_namespace, worker_processes

from durable_redis import ActivityContext, App, Client, OrchestrationContext, WorkerOptions
from durable_redis.devtools import WorkerProcesses

app = App("session-conversation")

MESSAGES = ["hello", "my router blinks red", "I rebooted it", "still red", "it works now", "bye"]
KILL_AFTER_TURN = 3

# Worker-local memory: the conversation so far, per (instance, session).
_memory: dict[str, list[str]] = {}


@dataclass(frozen=True, slots=True)
class TurnInput:
    message: str
    transcript: list[str]  # the durable copy, to rebuild the memory on a cold worker


@dataclass(frozen=True, slots=True)
class TurnResult:
    pid: int
    warm: bool  # the worker had the earlier turns in memory
    reply: str


@app.activity
def chat_turn(ctx: ActivityContext, turn: TurnInput) -> TurnResult:
    key = f"{ctx.instance_id}/{ctx.session_id}"
    memory = _memory.get(key)
    warm = memory is not None and len(memory) == len(turn.transcript)
    if not warm:
        memory = _memory[key] = list(turn.transcript)  # cold: rebuild from the durable copy
    assert memory is not None
    memory.append(turn.message)
    return TurnResult(os.getpid(), warm, f"({len(memory)} messages so far) noted: {turn.message}")


@app.orchestration
async def support_chat(ctx: OrchestrationContext, turns: int) -> list[TurnResult]:
    session = await ctx.open_session()
    transcript: list[str] = []
    results: list[TurnResult] = []
    for _ in range(turns):
        message: str = await ctx.wait_for_event("message")
        result = await ctx.call_activity(
            chat_turn, TurnInput(message, list(transcript)), session=session
        )
        transcript.append(message)
        results.append(result)
        ctx.set_custom_status({"turn": len(results), "pid": result.pid})
    await ctx.close_session(session)
    return results


# A short session lease so the session moves about a second after its owner dies.
OPTIONS = WorkerOptions(
    lock_timeout=1.0,
    session_lock_timeout=1.0,
    renewal_interval=0.25,
    fetch_wait=0.25,
    shutdown_grace_period=2.0,
    janitor_interval=None,
)


async def converse(url: str, namespace: str, workers: WorkerProcesses) -> list[TurnResult]:
    async with Client.from_url(url, namespace=namespace, app=app) as client:
        instance_id = await client.start(support_chat, len(MESSAGES))
        killed: int | None = None
        for number, message in enumerate(MESSAGES, start=1):
            await client.raise_event(instance_id, "message", message)
            with anyio.fail_after(20):
                while True:  # wait for this turn's reply
                    state = await client.get_status(instance_id)
                    status = state.custom_status if state is not None else None
                    if isinstance(status, dict) and status["turn"] == number:
                        break
                    await anyio.sleep(0.05)
            print(f"  turn {number} ran on worker pid {status['pid']}", flush=True)
            if number == KILL_AFTER_TURN:
                killed = status["pid"]
                workers.kill(killed)
                print(f"  -- killed the session's owner, pid {killed}, with SIGKILL --", flush=True)
        results: list[TurnResult] = await client.wait_for_completion(instance_id, timeout=20)
        return results


if __name__ == "__main__":
    with redis_url() as url:
        namespace = unique_namespace("session")
        with worker_processes("session_conversation", url, namespace, OPTIONS) as workers:
            workers.start(2)
            pids = workers.pids
            print(f"started two worker processes: {pids[0]} and {pids[1]}", flush=True)
            results = anyio.run(converse, url, namespace, workers)
    for number, r in enumerate(results, start=1):
        print(f"  turn {number}: pid {r.pid}, {'warm' if r.warm else 'cold'}: {r.reply}")
    before = {r.pid for r in results[:KILL_AFTER_TURN]}
    after = {r.pid for r in results[KILL_AFTER_TURN:]}
    moved = len(before) == 1 and len(after) == 1 and before != after
    warmth = [r.warm for r in results]
    expected_warmth = [False, True, True, False, True, True]  # cold at the start and after the move
    print(f"session moved from pid {min(before)} to pid {min(after)}" if moved else "no move")
    finish(
        moved and warmth == expected_warmth,
        f"turns 1-{KILL_AFTER_TURN} on one worker, the rest on the other after the kill",
    )
