"""The dashboard's Queues page and its actions over plain HTTP on the real Redis: the page
lists the queues, pause / resume / drain act and say what happened, a bad queue name is said
on the page with nothing changed, and the CSRF, read-only and token rules of every action."""

from __future__ import annotations

from typing import Any

import pytest
from test_dashboard_http import TOKEN, csrf_of
from test_dashboard_jobs import run

from durable_redis.client import Client

pytestmark = pytest.mark.timeout(90)


def paused(redis_url: str, namespace: str, queue: str) -> bool:
    async def use(c: Client) -> bool:
        return bool((await c.queue_status(queue)).paused)

    return bool(run(redis_url, namespace, use))


@pytest.mark.e2e
def test_queue_actions_over_http(redis_url: str, namespace: str, http: Any) -> None:
    import e2e_app

    async def seed(c: Client) -> None:
        await c.enqueue(e2e_app.whoami, "x", queue="batch")  # no worker: stays queued

    run(redis_url, namespace, seed)
    web = http()
    page = web.get("/queues")
    assert page.status_code == 200
    assert 'data-queue="batch"' in page.text and 'data-queue="default"' in page.text
    csrf = csrf_of(page.text)
    assert web.post("/actions/drain-queue", data={"queue": "batch"}).status_code == 403
    assert not paused(redis_url, namespace, "batch")  # no CSRF token: nothing changed
    reply = web.post("/actions/drain-queue", data={"queue": "batch", "csrf": csrf})
    assert reply.status_code == 200 and "paused for draining: drained" in reply.text
    assert paused(redis_url, namespace, "batch")
    reply = web.post("/actions/resume-queue", data={"queue": "batch", "csrf": csrf})
    assert "resumed" in reply.text and not paused(redis_url, namespace, "batch")
    reply = web.post("/actions/pause-queue", data={"queue": "batch", "csrf": csrf})
    assert "&#39;batch&#39; paused" in reply.text and paused(redis_url, namespace, "batch")
    bad = web.post("/actions/pause-queue", data={"queue": "no spaces", "csrf": csrf})
    assert bad.status_code == 200 and "InvalidIdError" in bad.text

    ro = http(read_only=True)
    listing = ro.get("/queues").text
    assert "btn-drain" not in listing and "btn-resume" not in listing
    token = ro.cookies.get("dr_csrf")
    refused = ro.post("/actions/resume-queue", data={"queue": "batch", "csrf": token})
    assert refused.status_code == 403 and "read-only" in refused.text
    locked = http(auth_token=TOKEN)
    assert locked.get("/queues").status_code == 401
    assert locked.post("/actions/resume-queue", data={"queue": "batch"}).status_code == 401
    assert paused(redis_url, namespace, "batch")  # still paused: nothing was let through
