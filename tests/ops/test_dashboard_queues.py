"""The dashboard's Queues page in the real headless browser, against a real worker process and
``durable-redis dashboard`` as its own process: the queues listed with their counts, and the
Pause / Resume / Drain buttons (POST with the CSRF token) acting on them; "draining" turns
"paused" live once the running job ends, and nothing queued is lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from test_dashboard_browser import WAIT_S, shoot, text_of, wait_until

from durable_redis.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_queues_page_pause_resume_and_drain(
    redis_url: str, namespace: str, pool: Any, dashboard: Any, browser: Any, tmp_path: Path
) -> None:
    import e2e_app
    from selenium.webdriver.common.by import By

    pool.start()  # serves "default" only
    handles: dict[str, Any] = {}

    async def seed() -> None:
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            handles["held"] = await c.enqueue(e2e_app.hold, {"dir": str(tmp_path), "name": "q"})
            handles["gpu"] = await c.enqueue(e2e_app.whoami, "gpu", queue="gpu")
            with anyio.fail_after(WAIT_S):
                while not list(tmp_path.glob("started-q-*")):
                    await anyio.sleep(0.05)

    anyio.run(seed)
    url = dashboard.start()
    d = browser
    d.get(url + "/")
    d.find_element(By.ID, "nav-queues").click()
    default, gpu = 'tr[data-queue="default"]', 'tr[data-queue="gpu"]'
    wait_until(d, lambda d: text_of(d, gpu + " td.jobs-ready") == "1", "gpu's queued job")
    assert text_of(d, default + " td.running") == "1"
    assert "active" in text_of(d, default + " td.state")
    d.find_element(By.CSS_SELECTOR, default + " .btn-drain").click()
    wait_until(d, lambda d: "1 still running" in text_of(d, "#flash"), "the drain flash")
    assert "draining" in text_of(d, default + " td.state")
    shoot(d, tmp_path, "queues")
    (tmp_path / "release-q").touch()
    wait_until(d, lambda d: "paused" in text_of(d, default + " td.state"), "drained (live)")
    assert text_of(d, default + " td.running") == "0"
    d.find_element(By.CSS_SELECTOR, default + " .btn-resume").click()
    wait_until(d, lambda d: "resumed" in text_of(d, "#flash"), "the resume flash")
    assert "active" in text_of(d, default + " td.state")
    d.find_element(By.CSS_SELECTOR, gpu + " .btn-pause").click()
    wait_until(d, lambda d: "paused" in text_of(d, "#flash"), "the pause flash")
    assert "paused" in text_of(d, gpu + " td.state")
    assert text_of(d, gpu + " td.jobs-ready") == "1"  # still queued, nothing lost

    async def states() -> tuple[str, str]:
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            held = await (await c.get_job(handles["held"].id)).status()
            queued = await (await c.get_job(handles["gpu"].id)).status()
            return held.state.value, queued.state.value

    assert anyio.run(states) == ("completed", "queued")
    errors = [e for e in d.get_log("browser") if e.get("source") == "javascript"]
    assert not errors, errors
