"""The dashboard's jobs and schedules pages over plain HTTP on the real Redis, with a real
worker process running the jobs: list and filter, a job's detail (attempts, times, result, the
failure's traceback), cancel and retry, pause / resume / trigger a schedule, and the same CSRF,
read-only and token rules as the instance actions."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from tests.ops.test_dashboard_http import TOKEN, csrf_of

pytestmark = pytest.mark.timeout(90)

WAIT_S = 30.0


def run(redis_url: str, namespace: str, use: Callable[[Client], Any]) -> Any:
    from tests.e2e import e2e_app

    async def go() -> Any:
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            return await use(c)

    return anyio.run(go)


def job_state(redis_url: str, namespace: str, job_id: str) -> str:
    async def use(c: Client) -> str:
        return (await (await c.get_job(job_id)).status()).state.value

    return str(run(redis_url, namespace, use))


def wait_job(redis_url: str, namespace: str, job_id: str, want: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while (state := job_state(redis_url, namespace, job_id)) != want:
        assert time.monotonic() < deadline, f"job {job_id} is {state}, not {want}"
        time.sleep(0.05)


def job_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([^"]+)"', html)


def enqueue_failing(redis_url: str, namespace: str, tmp_path: Path, job_id: str) -> None:
    """``flaky`` failing its first call, one attempt: the job fails; a retry succeeds."""
    from tests.e2e import e2e_app

    async def use(c: Client) -> None:
        args = {"dir": str(tmp_path), "fail_times": 1}
        await c.enqueue(e2e_app.flaky, args, job_id=job_id)

    run(redis_url, namespace, use)
    wait_job(redis_url, namespace, job_id, "failed")


@pytest.mark.e2e
def test_jobs_page_lists_filters_and_shows_a_failed_job_then_retries_it(
    redis_url: str, namespace: str, http: Any, pool: Any, tmp_path: Path
) -> None:
    from tests.e2e import e2e_app

    pool.start()
    enqueue_failing(redis_url, namespace, tmp_path, "pay-1")

    async def more(c: Client) -> None:
        await (await c.enqueue(e2e_app.whoami, "ada", job_id="hello-1")).result(timeout=WAIT_S)
        await c.enqueue(e2e_app.whoami, "later", job_id="later-1", delay=600)

    run(redis_url, namespace, more)
    web = http()
    listing = web.get("/jobs").text
    assert set(job_ids(listing)) == {"pay-1", "hello-1", "later-1"}
    assert re.search(
        r'id="job-counts">1 queued · 0 running · 2 finished \(retained\): '
        r"1 completed, 1 failed, 0 cancelled<",
        listing,
    )
    assert job_ids(web.get("/jobs", params={"status": "failed"}).text) == ["pay-1"]
    assert job_ids(web.get("/jobs", params={"status": "queued"}).text) == ["later-1"]
    assert job_ids(web.get("/jobs", params={"name": "whoami"}).text) == ["hello-1", "later-1"]
    first = web.get("/jobs", params={"name": "whoami", "limit": "1"}).text
    assert len(job_ids(first)) == 1  # (list_jobs reads the first of each index, then sorts)
    link = re.search(r'href="/jobs\?([^"]+)" id="more-jobs"', first)
    assert link and link.group(1) == "name=whoami&amp;limit=2"
    assert 'id="more-jobs"' not in web.get("/jobs").text
    for odd in ("²", "-5", "9" * 5000, "x"):  # a bad limit is the default (or 1), never a 500
        assert web.get("/jobs", params={"limit": odd}).status_code == 200
    overview = web.get("/").text
    assert re.search(r'id="jobs-queued">1<', overview)
    assert re.search(r'id="jobs-delayed">1<', overview)
    assert re.search(r'id="jobs-failed">1 failed<', overview)
    assert web.get("/api/overview").json()["job_counts"] == {
        "queued": 1,
        "ready": 0,
        "delayed": 1,
        "running": 0,
        "finished": 2,
        "finished_by_state": {"completed": 1, "failed": 1, "cancelled": 0},
    }

    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(web.get("/metrics").text)}
    gauges = {s.labels["state"]: s.value for s in families["durable_redis_jobs"].samples}
    assert gauges == {"queued": 1.0, "running": 0.0, "finished": 2.0}

    done = web.get("/job", params={"id": "hello-1"}).text
    assert "st-completed" in done and re.search(r'id="job-result">\{', done)
    page = web.get("/job", params={"id": "pay-1"})
    assert page.status_code == 200
    assert "ValueError" in page.text and "flaky failure 1" in page.text
    assert re.search(r'id="job-traceback">Traceback \(most recent call last\)', page.text)
    assert re.search(r'id="job-attempt">1 of 1<', page.text)
    assert 'id="btn-retry-job"' in page.text and 'id="btn-cancel-job"' not in page.text
    assert web.get("/job", params={"id": "no-such-job"}).status_code == 404

    reply = web.post(
        "/actions/retry-job",
        data={"job_id": "pay-1", "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/job?id=pay-1&msg=queued+again")
    wait_job(redis_url, namespace, "pay-1", "completed")
    after = web.get("/job", params={"id": "pay-1"}).text
    assert re.search(r'id="job-result">2<', after)  # the second call of flaky succeeded
    # retrying it again is refused, said on the page, and changes nothing
    assert 'id="job-actions"' not in after  # nothing to do to a completed job
    again = web.post("/actions/retry-job", data={"job_id": "pay-1", "csrf": csrf_of(page.text)})
    assert again.status_code == 200 and "JobStateError" in again.text
    assert job_state(redis_url, namespace, "pay-1") == "completed"


@pytest.mark.e2e
def test_cancel_a_queued_and_a_running_job(
    redis_url: str, namespace: str, http: Any, pool: Any, tmp_path: Path
) -> None:
    from tests.e2e import e2e_app

    pool.start()

    async def use(c: Client) -> None:
        await c.enqueue(e2e_app.whoami, "x", job_id="wait-1", delay=600)
        await c.enqueue(e2e_app.hold, {"dir": str(tmp_path), "name": "j"}, job_id="busy-1")

    run(redis_url, namespace, use)
    web = http()
    page = web.get("/job", params={"id": "wait-1"}).text
    assert "st-queued" in page and 'id="btn-cancel-job"' in page and "btn-retry-job" not in page
    form = {"job_id": "wait-1", "reason": "not needed"}
    assert web.post("/actions/cancel-job", data=form).status_code == 403  # no CSRF token
    assert job_state(redis_url, namespace, "wait-1") == "queued"
    reply = web.post("/actions/cancel-job", data={**form, "csrf": csrf_of(page)})
    assert reply.status_code == 200 and "cancelled" in reply.text
    assert job_state(redis_url, namespace, "wait-1") == "cancelled"
    assert "not needed" in web.get("/job", params={"id": "wait-1"}).text

    wait_job(redis_url, namespace, "busy-1", "running")
    busy = web.get("/job", params={"id": "busy-1"}).text
    assert "st-running" in busy and 'id="btn-cancel-job"' in busy
    web.post("/actions/cancel-job", data={"job_id": "busy-1", "csrf": csrf_of(busy)})
    assert job_state(redis_url, namespace, "busy-1") == "cancelled"
    deadline = time.monotonic() + WAIT_S
    while not list(tmp_path.glob("cancelled-j-*")):  # its worker stopped the activity
        assert time.monotonic() < deadline, "the running job was not stopped"
        time.sleep(0.05)
    assert 'id="btn-retry-job"' in web.get("/job", params={"id": "busy-1"}).text


@pytest.mark.e2e
def test_a_running_job_shows_its_progress(
    redis_url: str, namespace: str, http: Any, pool: Any, tmp_path: Path
) -> None:
    from tests.e2e import e2e_app

    pool.start()

    async def use(c: Client) -> None:
        await c.enqueue(e2e_app.hold_progress, {"dir": str(tmp_path), "name": "p"}, job_id="prog-1")

    run(redis_url, namespace, use)
    web = http()
    deadline = time.monotonic() + WAIT_S
    while "&#34;step&#34;: 1" not in (page := web.get("/job", params={"id": "prog-1"}).text):
        assert time.monotonic() < deadline, "no progress shown"
        time.sleep(0.05)
    assert "st-running" in page and re.search(r'id="job-progress">\{', page)
    row = web.get("/jobs", params={"status": "running"}).text
    assert job_ids(row) == ["prog-1"] and "{ &#34;of&#34;: 3, &#34;step&#34;: 1 }" in row
    (tmp_path / "release-p").touch()
    wait_job(redis_url, namespace, "prog-1", "completed")
    assert re.search(r'id="job-result">3<', web.get("/job", params={"id": "prog-1"}).text)


def test_job_actions_refused_read_only_and_without_the_token(
    redis_url: str, namespace: str, http: Any, tmp_path: Path
) -> None:
    from tests.e2e import e2e_app

    async def use(c: Client) -> None:
        await c.enqueue(e2e_app.whoami, "x", job_id="ro-job", delay=600)
        await c.create_schedule("ro-sched", e2e_app.whoami, "tick", every=3600)

    run(redis_url, namespace, use)
    ro = http(read_only=True)
    page = ro.get("/job", params={"id": "ro-job"}).text
    assert 'id="job-actions"' not in page
    assert "btn-pause" not in ro.get("/schedules").text
    token = ro.cookies.get("dr_csrf")
    assert token
    for kind, form in (
        ("cancel-job", {"job_id": "ro-job"}),
        ("pause-schedule", {"schedule": "ro-sched"}),
        ("trigger-schedule", {"schedule": "ro-sched"}),
    ):
        refused = ro.post(f"/actions/{kind}", data={**form, "csrf": token})
        assert refused.status_code == 403 and "read-only" in refused.text
    assert job_state(redis_url, namespace, "ro-job") == "queued"
    locked = http(auth_token=TOKEN)
    for path in ("/jobs", "/job?id=ro-job", "/schedules"):
        assert locked.get(path).status_code == 401, path
    assert locked.post("/actions/cancel-job", data={"job_id": "ro-job"}).status_code == 401
    assert job_state(redis_url, namespace, "ro-job") == "queued"

    async def paused(c: Client) -> bool:
        return (await c.get_schedule("ro-sched")).paused

    assert run(redis_url, namespace, paused) is False


@pytest.mark.e2e
def test_schedules_page_pause_resume_and_trigger(
    redis_url: str, namespace: str, http: Any, pool: Any
) -> None:
    from tests.e2e import e2e_app

    pool.start()

    async def create(c: Client) -> None:
        await c.create_schedule(
            "nightly", e2e_app.whoami, "n", cron="30 2 * * *", timezone="Europe/Paris"
        )
        await c.create_schedule("often", e2e_app.whoami, "o", every=3600)
        await c.create_schedule("greet", orchestration=e2e_app.hello, input="x", every=3600)

    run(redis_url, namespace, create)
    web = http()
    page = web.get("/schedules").text
    rows = dict(re.findall(r'<tr data-schedule="([^"]+)">(.*?)</tr>', page, re.S))
    assert set(rows) == {"nightly", "often", "greet"}
    assert "orchestration hello" in rows["greet"]
    assert "cron 30 2 * * *" in rows["nightly"] and "Europe/Paris" in rows["nightly"]
    assert "every 1 h 00 m" in rows["often"] and "whoami" in rows["often"]
    assert "st-running" in rows["often"] and "btn-pause" in rows["often"]
    csrf = csrf_of(page)

    def schedule(name: str) -> Any:
        async def use(c: Client) -> Any:
            return await c.get_schedule(name)

        return run(redis_url, namespace, use)

    reply = web.post("/actions/pause-schedule", data={"schedule": "often", "csrf": csrf})
    assert reply.status_code == 200 and "paused" in reply.text
    assert schedule("often").paused and schedule("often").next_run_at is None
    assert (
        "btn-resume"
        in dict(re.findall(r'<tr data-schedule="([^"]+)">(.*?)</tr>', reply.text, re.S))["often"]
    )
    web.post("/actions/resume-schedule", data={"schedule": "often", "csrf": csrf})
    assert not schedule("often").paused and schedule("often").next_run_at is not None

    trigger = web.post(
        "/actions/trigger-schedule",
        data={"schedule": "nightly", "csrf": csrf},
        follow_redirects=False,
    )
    assert trigger.status_code == 303
    location = trigger.headers["location"]
    match = re.match(r"/job\?id=(sched%3Anightly%3Anow%3A[0-9a-f]+)&msg=", location)
    assert match, location
    job_id = match.group(1).replace("%3A", ":")
    wait_job(redis_url, namespace, job_id, "completed")
    assert "whoami" in web.get("/job", params={"id": job_id}).text
    started = web.post(
        "/actions/trigger-schedule",
        data={"schedule": "greet", "csrf": csrf},
        follow_redirects=False,
    )
    assert started.status_code == 303
    assert re.match(r"/instance\?id=greet%40now%3A[0-9a-f]+&msg=", started.headers["location"])
    missing = web.post("/actions/pause-schedule", data={"schedule": "nope", "csrf": csrf})
    assert missing.status_code == 200 and "ScheduleNotFoundError" in missing.text


def test_job_overview_splits_finished_jobs_by_state_only_while_few(
    redis_url: str, namespace: str
) -> None:
    """Over four partitions: ready, delayed and cancelled jobs counted; the finished ones split
    by state up to ``split_limit`` retained jobs, beyond it only their total."""
    from durable_redis.storage.insights import job_overview
    from durable_redis.storage.redis_store import RedisStore
    from tests.e2e import e2e_app

    async def go() -> tuple[Any, Any]:
        store = RedisStore.from_url(redis_url, namespace=namespace, partitions=4)
        try:
            await store.initialize()
            async with Client(store, app=e2e_app.app) as c:
                await c.enqueue_many(e2e_app.whoami, range(3), job_ids=["r-1", "r-2", "r-3"])
                await c.enqueue_many(e2e_app.whoami, range(2), job_ids=["d-1", "d-2"], delay=600)
                for jid in ("r-1", "d-1"):
                    await c.cancel_job(jid, "test")
            return await job_overview(store), await job_overview(store, split_limit=1)
        finally:
            await store.close()

    split, total_only = anyio.run(go)
    assert (split.ready, split.delayed, split.running, split.finished) == (2, 1, 0, 2)
    assert split.finished_by_state == {"completed": 0, "failed": 0, "cancelled": 2}
    assert total_only.finished == 2 and total_only.finished_by_state is None
