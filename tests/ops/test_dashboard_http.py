"""The dashboard over plain HTTP (Starlette's TestClient) on the real Redis: pages, paging,
search, auth token, CSRF, read-only, escaping. No workers: instances stay pending, which is
enough to list them and to see what an action enqueued or deleted."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from durable_redis.client import Client
from durable_redis.dashboard import create_app
from durable_redis.storage.redis_store import RedisStore

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-token-for-tests"


def seed(redis_url: str, namespace: str, ids: list[str], name: str = "hello") -> None:
    async def go() -> None:
        async with Client.from_url(redis_url, namespace=namespace) as client:
            for iid in ids:
                await client.start(name, {"who": iid}, instance_id=iid)

    anyio.run(go)


def instance(redis_url: str, namespace: str, iid: str) -> Any:
    async def go() -> Any:
        store = RedisStore.from_url(redis_url, namespace=namespace)
        try:
            return await store.get_instance(iid)
        finally:
            await store.close()

    return anyio.run(go)


def queued_messages(redis_url: str, namespace: str, iid: str) -> int:
    async def go() -> int:
        store = RedisStore.from_url(redis_url, namespace=namespace)
        try:
            await store.initialize()
            return int(await store._r.zcard(store._pk(iid).instance(iid).mz))
        finally:
            await store.close()

    return anyio.run(go)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def test_pages_render_and_list_instances_with_cursor_paging(
    redis_url: str, namespace: str, http: Any
) -> None:
    ids = [f"page-{i:03d}" for i in range(120)]
    seed(redis_url, namespace, ids)
    web = http()
    overview = web.get("/")
    assert overview.status_code == 200
    assert re.search(r'id="count-pending">\s*<span class="n">120<', overview.text)
    seen: list[str] = []
    url = "/instances"
    for _ in range(5):
        page = web.get(url)
        assert page.status_code == 200
        seen += re.findall(r'<tr data-id="([^"]+)"', page.text)
        nxt = re.search(r'href="([^"]+)" id="next-page"', page.text)
        if nxt is None:
            break
        url = nxt.group(1).replace("&amp;", "&")
    assert seen == ids  # oldest first, every one once, across three pages of 50
    assert web.get("/api/overview").json()["counts"]["pending"] == 120


def test_filter_by_status_and_name_and_id_prefix(redis_url: str, namespace: str, http: Any) -> None:
    seed(redis_url, namespace, ["order-1", "order-2", "refund-1"])
    seed(redis_url, namespace, ["other-1"], name="approval")
    web = http()
    by_prefix = web.get("/instances", params={"q": "order-"}).text
    assert re.findall(r'<tr data-id="([^"]+)"', by_prefix) == ["order-1", "order-2"]
    by_name = web.get("/instances", params={"name": "approval"}).text
    assert re.findall(r'<tr data-id="([^"]+)"', by_name) == ["other-1"]
    done = web.get("/instances", params={"status": "completed"}).text
    assert re.findall(r'<tr data-id="([^"]+)"', done) == []
    detail = web.get("/instance", params={"id": "order-1"})
    assert detail.status_code == 200
    assert re.search(r'id="input">\{\s*&#34;who&#34;: &#34;order-1&#34;', detail.text)
    assert web.get("/instance", params={"id": "no-such"}).status_code == 404


def test_ids_and_payloads_are_escaped(redis_url: str, namespace: str, http: Any) -> None:
    evil = "<script>alert(1)</script>"
    seed(redis_url, namespace, [evil])
    web = http()
    for page in (web.get("/instances"), web.get("/instance", params={"id": evil})):
        assert evil not in page.text
        assert "&lt;script&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_actions_need_the_csrf_token_and_same_origin(
    redis_url: str, namespace: str, http: Any
) -> None:
    seed(redis_url, namespace, ["act-1"])
    web = http()
    page = web.get("/instance", params={"id": "act-1"})
    token = csrf_of(page.text)
    before = queued_messages(redis_url, namespace, "act-1")
    form = {"instance_id": "act-1", "event": "go", "data": '{"ok": true}'}
    # no token, wrong token, right token from another origin: refused, nothing enqueued
    assert web.post("/actions/raise-event", data=form).status_code == 403
    assert web.post("/actions/raise-event", data={**form, "csrf": "x" * 32}).status_code == 403
    other = web.post(
        "/actions/raise-event",
        data={**form, "csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert other.status_code == 403
    assert queued_messages(redis_url, namespace, "act-1") == before
    # a form posted from another site carries its own cookie jar: no dr_csrf cookie at all
    stranger = http()
    refused = stranger.post("/actions/cancel", data={"instance_id": "act-1", "csrf": token})
    assert refused.status_code == 403
    ok = web.post(
        "/actions/raise-event",
        data={**form, "csrf": token},
        headers={"Origin": "http://127.0.0.1:8080"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and "event+%27go%27+sent" in ok.headers["location"]
    assert queued_messages(redis_url, namespace, "act-1") == before + 1
    assert web.get("/actions/cancel").status_code == 405  # GET never acts


def test_purge_refuses_a_running_instance_without_force(
    redis_url: str, namespace: str, http: Any
) -> None:
    seed(redis_url, namespace, ["purge-1"])
    web = http()
    token = csrf_of(web.get("/instance", params={"id": "purge-1"}).text)
    kept = web.post("/actions/purge", data={"instance_id": "purge-1", "csrf": token})
    assert "pass force=True" in kept.text
    assert instance(redis_url, namespace, "purge-1") is not None
    gone = web.post("/actions/purge", data={"instance_id": "purge-1", "csrf": token, "force": "1"})
    assert gone.status_code == 200 and "purged 1 instance" in gone.text
    assert instance(redis_url, namespace, "purge-1") is None


def test_read_only_refuses_actions_and_shows_none(
    redis_url: str, namespace: str, http: Any
) -> None:
    seed(redis_url, namespace, ["ro-1"])
    web = http(read_only=True)
    page = web.get("/instance", params={"id": "ro-1"})
    assert page.status_code == 200 and 'id="actions"' not in page.text and "read-only" in page.text
    token = web.cookies.get("dr_csrf")
    assert token
    refused = web.post("/actions/purge", data={"instance_id": "ro-1", "csrf": token, "force": "1"})
    assert refused.status_code == 403 and "read-only" in refused.text
    assert instance(redis_url, namespace, "ro-1") is not None


def test_auth_token_is_required_everywhere(redis_url: str, namespace: str, http: Any) -> None:
    seed(redis_url, namespace, ["auth-1"])
    web = http(auth_token=TOKEN)
    for path in ("/", "/instances", "/instance?id=auth-1", "/workers", "/api/overview"):
        assert web.get(path).status_code == 401, path
    assert web.post("/actions/purge", data={"instance_id": "auth-1"}).status_code == 401
    assert web.get("/?token=wrong-token-x").status_code == 401
    bearer = web.get("/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200
    login = web.get(f"/instances?status=pending&token={TOKEN}", follow_redirects=False)
    assert login.status_code == 303 and TOKEN not in login.headers["location"]
    assert web.cookies.get("dr_auth") and TOKEN not in web.cookies.get("dr_auth", "")
    assert web.get("/instances").status_code == 200  # the cookie now
    token = csrf_of(web.get("/instance", params={"id": "auth-1"}).text)
    purged = web.post("/actions/purge", data={"instance_id": "auth-1", "csrf": token, "force": "1"})
    assert purged.status_code == 200
    assert instance(redis_url, namespace, "auth-1") is None


def test_live_refresh_returns_only_the_live_block(
    redis_url: str, namespace: str, http: Any
) -> None:
    seed(redis_url, namespace, ["live-1"])
    web = http()
    full = web.get("/instances").text
    part = web.get("/instances", params={"partial": "1"}).text
    assert "<html" in full and "<html" not in part
    assert 'data-id="live-1"' in part and 'id="filters"' not in part


def test_mounted_under_a_prefix(redis_url: str, namespace: str) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    seed(redis_url, namespace, ["mnt-1"])
    inner = create_app(redis_url, namespace=namespace, auth_token=TOKEN)
    outer = Starlette(routes=[Mount("/ops", app=inner)])
    with TestClient(outer) as web:
        login = web.get(f"/ops/instances?token={TOKEN}", follow_redirects=False)
        assert login.headers["location"] == "/ops/instances"
        assert "Path=/ops" in login.headers["set-cookie"]
        page = web.get("/ops/instances")
        assert page.status_code == 200
        assert 'href="/ops/instance?id=mnt-1"' in page.text
        assert 'href="/ops/static/dashboard.css"' in page.text
        assert web.get("/ops/static/dashboard.js").status_code == 200
        assert web.portal is not None
        web.portal.call(inner.state.aclose)  # a mounted app gets no lifespan of its own


@pytest.mark.e2e
def test_overview_shows_queue_depths_and_the_oldest_waiting_work(
    redis_url: str, namespace: str, http: Any, pool: Any, tmp_path: Path
) -> None:
    """One activity slot, two held activities: one leased, one waiting in the queue, whose age
    (since its ActivityScheduled event) the overview reports; plus a message nobody takes."""
    import e2e_app

    pool.start(activity_concurrency=1)

    async def start() -> None:
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            for name in ("a", "b"):
                await c.start("child_hold", {"dir": str(tmp_path), "name": name})

    anyio.run(start)
    web = http()
    deadline = time.monotonic() + 20
    while True:
        data = web.get("/api/overview").json()
        if data["totals"]["work_leased"] == 1 and data["totals"]["work_ready"] == 1:
            break
        assert time.monotonic() < deadline, str(data["totals"])
        time.sleep(0.05)
    assert data["counts"]["running"] == 2 and data["workers"] == 1
    first_age = data["oldest_work_age_ms"]
    assert first_age is not None and first_age >= 0
    while (age := web.get("/api/overview").json()["oldest_work_age_ms"]) <= first_age:
        assert time.monotonic() < deadline + 10, "the waiting activity's age does not grow"
        time.sleep(0.05)
    assert age is not None
    page = web.get("/").text
    assert re.search(r'id="q-work">1<', page) and re.search(r'id="q-leased">1<', page)
    (tmp_path / "release-a").touch()
    (tmp_path / "release-b").touch()


def test_several_partitions_per_partition_table_and_merged_listing(
    redis_url: str, namespace: str, http: Any
) -> None:
    async def create() -> None:
        store = RedisStore.from_url(redis_url, namespace=namespace, partitions=4)
        await store.initialize()
        await store.close()

    anyio.run(create)
    ids = [f"p4-{i:02d}" for i in range(60)]
    seed(redis_url, namespace, ids)
    web = http()
    overview = web.get("/").text
    table = overview[overview.index('id="partitions"') :]
    assert len(re.findall(r"<tr><td>\d+</td>", table)) == 4
    first = web.get("/instances").text
    seen = re.findall(r'<tr data-id="([^"]+)"', first)
    nxt = re.search(r'href="([^"]+)" id="next-page"', first)
    assert nxt is not None
    seen += re.findall(r'<tr data-id="([^"]+)"', web.get(nxt.group(1).replace("&amp;", "&")).text)
    assert seen == ids  # one global order over the four partitions
    assert re.findall(r'<tr data-id="([^"]+)"', web.get("/instances?q=p4-5").text) == [
        f"p4-5{i}" for i in range(10)
    ]


def test_dashboard_exports_namespace_gauges(redis_url: str, namespace: str, http: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    seed(redis_url, namespace, ["m-1", "m-2", "m-3"])
    web = http(auth_token=TOKEN)
    assert web.get("/metrics").status_code == 401
    reply = web.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    pending = [
        s.value
        for s in families["durable_redis_instances"].samples
        if s.labels["status"] == "pending"
    ]
    assert pending == [3.0]
    ready = [
        s.value
        for s in families["durable_redis_queue_depth"].samples
        if s.labels["queue"] == "orchestrations_ready"
    ]
    assert ready == [3.0]
    lag = [
        s.value
        for s in families["durable_redis_oldest_waiting_seconds"].samples
        if s.labels["queue"] == "orchestrations"
    ]
    assert len(lag) == 1 and lag[0] >= 0
    assert families["durable_redis_live_workers"].samples[0].value == 0


@pytest.mark.e2e
def test_rerun_a_failed_instance(
    redis_url: str, namespace: str, http: Any, pool: Any, tmp_path: Path
) -> None:
    import e2e_app

    pool.start()
    args = {"dir": str(tmp_path), "fail_times": 1, "max_attempts": 1}

    async def start_and_wait() -> Any:
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            await c.start("retries", args, instance_id="rerun-1")
            return await c.wait_for_state("rerun-1", timeout=30)

    assert anyio.run(start_and_wait).status.value == "failed"
    web = http()
    page = web.get("/instance", params={"id": "rerun-1"}).text
    assert 'id="btn-rerun"' in page
    reply = web.post("/actions/rerun", data={"instance_id": "rerun-1", "csrf": csrf_of(page)})
    assert reply.status_code == 200 and "re-run started" in reply.text

    async def wait() -> Any:
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            return await c.wait_for_state("rerun-1", timeout=30)

    state = anyio.run(wait)
    assert state.status.value == "completed" and state.output == 2  # the second call succeeds
    assert state.input == args


def test_a_held_instance_shows_as_held(redis_url: str, namespace: str, http: Any) -> None:
    """Issue 16: the held marker (a nondeterministic deploy) on the list and the instance page,
    escaped like any stored text."""
    seed(redis_url, namespace, ["held-1"])

    async def hold() -> None:
        store = RedisStore.from_url(redis_url, namespace=namespace)
        try:
            lease = await store.fetch_orchestration(lock_ms=5000)
            assert lease is not None and lease.instance_id == "held-1"
            await store.abandon_orchestration(
                lease, delay_ms=60_000, count_attempt=False, held="recorded <A>, now B"
            )
        finally:
            await store.close()

    anyio.run(hold)
    seed(redis_url, namespace, ["fine-1"])
    web = http()
    listing = web.get("/instances").text
    assert listing.count('title="recorded &lt;A&gt;, now B">held</span>') == 1
    detail = web.get("/instance", params={"id": "held-1"}).text
    assert re.search(r'id="held">recorded &lt;A&gt;, now B', detail)
    assert 'id="held"' not in web.get("/instance", params={"id": "fine-1"}).text


def failed_instance(redis_url: str, namespace: str, iid: str) -> None:
    """Start ``iid`` on an orchestration that fails, and run a worker until it has failed."""
    from durable_redis.core import App, OrchestrationContext
    from durable_redis.runtime import Worker, WorkerOptions

    app = App("dash-reset")

    @app.orchestration(name="breaks")
    async def breaks(ctx: OrchestrationContext) -> None:
        ctx.set_custom_status("about to fail")
        raise RuntimeError("broken")

    async def go() -> None:
        store = RedisStore.from_url(redis_url, namespace=namespace)
        try:
            client = Client(store, app)
            await client.start("breaks", instance_id=iid)
            worker = Worker(app, store, WorkerOptions(fetch_wait=0.2, janitor_interval=None))
            async with anyio.create_task_group() as group:
                group.start_soon(worker.run)
                await client.wait_for_state(iid, timeout=20)
                worker.stop(grace_period=0)
        finally:
            await store.close()

    anyio.run(go)


def test_reset_from_the_instance_page(redis_url: str, namespace: str, http: Any) -> None:
    failed_instance(redis_url, namespace, "reset-1")
    web = http()
    page = web.get("/instance", params={"id": "reset-1"})
    assert 'id="form-reset"' in page.text
    token = csrf_of(page.text)
    form = {"instance_id": "reset-1", "csrf": token, "reason": "fixed it"}
    assert web.post("/actions/reset", data={**form, "csrf": "x" * 32}).status_code == 403
    refused = web.post("/actions/reset", data={**form, "point": "7"})
    assert "not reset: ResetPointError" in refused.text
    assert instance(redis_url, namespace, "reset-1").execution_id == 1
    done = web.post("/actions/reset", data={**form, "point": "1"}, follow_redirects=False)
    assert done.status_code == 303 and "execution+2+runs+from+event+1" in done.headers["location"]
    info = instance(redis_url, namespace, "reset-1")
    assert (info.execution_id, info.status.value) == (2, "running")
    page = web.get("/instance", params={"id": "reset-1"}).text
    assert "ExecutionReset" in page and 'id="form-reset"' not in page  # running, not held
    assert "fixed it" in page
