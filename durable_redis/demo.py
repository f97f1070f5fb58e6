"""``durable-redis demo``: support conversations pinned to workers by sessions.

The app (``durable_redis.demo:app``): each conversation opens a session; every turn of it runs
``chat_turn`` on the one worker process that holds the session, which keeps the conversation's
transcript in memory between turns. The orchestration then fans out to ``score_turn`` (plain
activities, any worker, with retries) and closes the session.

``durable_redis._cli_demo.run_demo`` drives it (``durable-redis demo``): a private Redis (unless
a URL is given), two worker processes, a few conversations, progress while they run, and a
report of which worker ran every turn. This module is the app alone: the workers import it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from durable_redis.core import ActivityContext, App, OrchestrationContext, RetryPolicy

__all__ = [
    "Conversation",
    "ConversationResult",
    "TurnReply",
    "app",
    "chat_turn",
    "conversation",
    "score_turn",
]

app = App("demo")

# In-memory state kept by a worker process between the turns of a session.
_transcripts: dict[str, list[str]] = {}

THINK_SECONDS = 0.25  # each turn "thinks" this long, so the progress is visible


@dataclass(frozen=True, slots=True)
class Conversation:
    customer: str
    messages: list[str]


@dataclass(frozen=True, slots=True)
class TurnReply:
    worker_pid: int
    turn: int
    remembered: int  # how many earlier turns this worker still had in memory
    reply: str


@dataclass(frozen=True, slots=True)
class ConversationResult:
    customer: str
    session_id: str
    worker_pids: list[int]
    remembered_all: bool
    score: int


@app.activity
def chat_turn(ctx: ActivityContext, message: str) -> TurnReply:
    key = f"{ctx.instance_id}/{ctx.session_id}"
    transcript = _transcripts.setdefault(key, [])
    remembered = len(transcript)
    transcript.append(message)
    time.sleep(THINK_SECONDS)
    return TurnReply(
        worker_pid=os.getpid(),
        turn=remembered + 1,
        remembered=remembered,
        reply=f"ack {message!r} (turn {remembered + 1})",
    )


@app.activity
def score_turn(ctx: ActivityContext, reply: str) -> int:
    return len(reply) % 7


@app.activity
def forget(ctx: ActivityContext, session_key: str) -> None:
    _transcripts.pop(session_key, None)


@app.orchestration
async def conversation(ctx: OrchestrationContext, convo: Conversation) -> ConversationResult:
    session = await ctx.open_session()
    replies: list[TurnReply] = []
    for message in convo.messages:
        reply = await ctx.call_activity(chat_turn, message, session=session)
        replies.append(reply)
        ctx.set_custom_status(
            {"turn": len(replies), "of": len(convo.messages), "worker_pid": reply.worker_pid}
        )
    scores = await ctx.when_all(
        [
            ctx.call_activity(
                score_turn, r.reply, retry=RetryPolicy(max_attempts=3, initial_delay=0.2)
            )
            for r in replies
        ]
    )
    await ctx.call_activity(forget, f"{ctx.instance_id}/{session}", session=session)
    await ctx.close_session(session)
    return ConversationResult(
        customer=convo.customer,
        session_id=session,
        worker_pids=[r.worker_pid for r in replies],
        remembered_all=all(r.remembered == i for i, r in enumerate(replies)),
        score=sum(scores),
    )


# -- the demo's sample conversations (the driver sends them) ---------------------------------------
_CUSTOMERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
_LINES = [
    "hi, my order has not arrived",
    "it is order 1042",
    "yes, the address is right",
    "can you send it again?",
    "thanks, that works",
    "one more thing: the invoice",
    "perfect, bye",
]
WORKER_COUNT = 2
