"""Background jobs: one activity call at a time, no orchestration around it.

Enqueue a welcome e-mail as a job and wait for its result; enqueue a batch in one round trip;
retry a flaky job on durable timers; follow a long job's progress; dedupe by job id; defer one
with ``delay``; cancel one; and do the same from blocking code with ``SyncClient`` (the way a
Django view or a script would).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import anyio
from _support import finish, in_process_worker, redis_url, unique_namespace

from durable_redis import (
    ActivityContext,
    App,
    Client,
    JobFailedError,
    JobState,
    RetryPolicy,
    SyncClient,
)

app = App("jobs")


@dataclass
class Email:
    to: str
    subject: str


@app.activity
def send_email(ctx: ActivityContext, email: Email) -> str:
    # ctx.idempotency_key ("job:<job id>") is the same on every redelivery: pass it to the
    # mail provider so a retried job cannot send twice
    return f"sent {email.subject!r} to {email.to}"


flaky_calls = 0
flaky_lock = threading.Lock()


@app.activity
def charge_card(ctx: ActivityContext, cents: int) -> str:
    global flaky_calls
    with flaky_lock:
        flaky_calls += 1
    if ctx.attempt < 3:
        raise ConnectionError(f"payment gateway timeout (attempt {ctx.attempt})")
    return f"charged {cents} cents on attempt {ctx.attempt}"


@app.activity
async def resize_images(ctx: ActivityContext, count: int) -> int:
    for i in range(count):
        ctx.report_progress({"done": i + 1, "total": count})
        await anyio.sleep(0.05)
    return count


@app.activity
def reject(ctx: ActivityContext, reason: str) -> None:
    raise ValueError(reason)


async def main(url: str, namespace: str) -> dict[str, object]:
    out: dict[str, object] = {}
    async with (
        in_process_worker(app, url, namespace),
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        job = await client.enqueue(send_email, Email("ada@example.com", "Welcome"))
        out["welcome"] = await job.result(timeout=10)

        batch = await client.enqueue_many(
            send_email, [Email(f"user{i}@example.com", "News") for i in range(100)]
        )
        out["batch"] = sum([(await j.result(timeout=10)).startswith("sent") for j in batch])

        charge = await client.enqueue(
            charge_card, 1999, retry=RetryPolicy(max_attempts=5, initial_delay=0.05)
        )
        out["charge"] = await charge.result(timeout=10)

        resize = await client.enqueue(resize_images, 8)
        seen: list[object] = []
        while not (status := await resize.status()).is_terminal:
            if status.progress is not None and status.progress not in seen:
                seen.append(status.progress)
            await anyio.sleep(0.02)
        out["progress_updates"] = len(seen)
        out["resized"] = await resize.result(timeout=10)

        first = await client.enqueue(send_email, Email("bob@example.com", "Once"), job_id="bob-1")
        again = await client.enqueue(send_email, Email("bob@example.com", "Once"), job_id="bob-1")
        listed = await client.list_jobs(name="send_email", limit=500)
        out["deduped"] = first.id == again.id and len(listed) == 102

        later = await client.enqueue(send_email, Email("cy@example.com", "Later"), delay=3600)
        out["cancelled"] = (await later.cancel()) is JobState.QUEUED

        failing = await client.enqueue(reject, "no such account")
        try:
            await failing.result(timeout=10)
        except JobFailedError as exc:
            out["failure"] = f"{exc.type_name}: {exc.details.message}"

        def blocking() -> str:  # what a Django view would do
            with SyncClient.from_url(url, namespace=namespace, app=app) as sync:
                return sync.enqueue(send_email, Email("dee@example.com", "Sync")).result(timeout=10)

        out["sync"] = await anyio.to_thread.run_sync(blocking)
    return out


if __name__ == "__main__":
    with redis_url() as url:
        out = anyio.run(main, url, unique_namespace("jobs"))
    for key, value in out.items():
        print(f"  {key}: {value}")
    ok = (
        out["welcome"] == "sent 'Welcome' to ada@example.com"
        and out["batch"] == 100
        and out["charge"] == "charged 1999 cents on attempt 3"
        and flaky_calls == 3
        and out["resized"] == 8
        and isinstance(out["progress_updates"], int)
        and out["progress_updates"] >= 2
        and out["deduped"] is True
        and out["cancelled"] is True
        and out["failure"] == "ValueError: no such account"
        and out["sync"] == "sent 'Sync' to dee@example.com"
    )
    finish(ok, "101 e-mails sent, a charge retried twice, progress followed, one job deduped")
