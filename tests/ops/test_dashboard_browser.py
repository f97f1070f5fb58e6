"""The dashboard in a real headless browser (Debian's chromium through selenium), clicking
through the pages and the actions against a real worker process on the real Redis, with
``durable-redis dashboard`` running as its own process. Screenshots go to the test's tmp dir,
and to ``$DURABLE_REDIS_SCREENSHOTS`` when set (``docs/screenshots`` holds the current ones).

Without chromium these tests FAIL with the install line (see conftest.py); set
``DURABLE_REDIS_SKIP_BROWSER=1`` to skip them on purpose.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable_redis.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

WAIT_S = 25.0


def wait_until(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(
        condition, message=f"timed out after {WAIT_S}s waiting for {what}"
    )


def _swapped(exc: Exception) -> bool:
    """The live refresh replaced the element between its lookup and its read: selenium's
    stale element, or chromium's "Node with given id does not belong to the document"."""
    from selenium.common.exceptions import StaleElementReferenceException

    return isinstance(exc, StaleElementReferenceException) or (
        "does not belong to the document" in str(exc)
    )


def text_of(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except NoSuchElementException:
        return ""
    except WebDriverException as exc:
        if _swapped(exc):
            return ""
        raise


def attrs(driver: Any, css: str, name: str) -> list[str]:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return [str(e.get_attribute(name)) for e in driver.find_elements(By.CSS_SELECTOR, css)]
    except WebDriverException as exc:
        if _swapped(exc):  # the live refresh swapped the rows
            return []
        raise


def shoot(driver: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 5000, f"screenshot {name} looks empty"
    target = os.environ.get("DURABLE_REDIS_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def seed(redis_url: str, namespace: str, marker_dir: Path) -> None:
    """A finished, a parent with children, a failed one and two waiting for an event."""
    from tests.e2e import e2e_app

    async def go() -> None:
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            await c.start("hello", "ada", instance_id="hello-ada")
            await c.start("parent", [1, 2, 3], instance_id="fanout-1")
            failing = {"dir": str(marker_dir), "fail_times": 5, "max_attempts": 1}
            await c.start("retries", failing, instance_id="payment-failed")
            await c.start("approval", 600, instance_id="approval-1")
            await c.start("approval", 600, instance_id="approval-2")
            await c.start("crash_owner", {"dir": str(marker_dir)}, instance_id="chat-1")
            for iid in ("hello-ada", "fanout-1", "payment-failed"):
                await c.wait_for_state(iid, timeout=WAIT_S)
            with anyio.fail_after(WAIT_S):
                while not list(marker_dir.glob("started-x-*")):  # chat-1 holds its session
                    await anyio.sleep(0.05)
                for iid in ("approval-1", "approval-2"):
                    while (state := await c.get_status(iid)) is None or (
                        state.custom_status != "waiting"
                    ):
                        await anyio.sleep(0.05)

    anyio.run(go)


def test_click_through_pages_and_actions(
    redis_url: str, namespace: str, pool: Any, dashboard: Any, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    worker = pool.start()
    seed(redis_url, namespace, marker_dir)
    url = dashboard.start()
    d = browser

    # overview: counts, queues, the live worker
    d.get(url + "/")
    wait_until(d, lambda d: text_of(d, "#live-workers") == "1", "one live worker")
    assert text_of(d, "#count-completed").startswith("5")  # hello, fanout and its 3 children
    assert text_of(d, "#count-failed").startswith("1")
    assert text_of(d, "#count-running").startswith("3")
    assert text_of(d, "#q-ready") == "0"
    shoot(d, tmp_path, "overview")

    # instances: the list, then a search by id prefix
    d.find_element(By.ID, "nav-instances").click()
    wait_until(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#instances tr[data-id]"), "rows")
    ids = attrs(d, "tr[data-id]", "data-id")
    assert {"hello-ada", "fanout-1", "payment-failed", "approval-1", "chat-1"} <= set(ids)
    assert "fanout-1:sub:2" in ids
    shoot(d, tmp_path, "instances")
    ids_wanted = ["approval-1", "approval-2"]
    d.find_element(By.ID, "f-q").send_keys("approval-")
    d.find_element(By.ID, "f-apply").click()
    wait_until(d, lambda d: attrs(d, "tr[data-id]", "data-id") == ids_wanted, "the search")

    # one instance: raise the event it waits for; the page then updates itself (no reload)
    d.find_element(By.LINK_TEXT, "approval-1").click()
    wait_until(d, lambda d: "running" in text_of(d, "#status"), "approval-1 running")
    assert "waiting" in text_of(d, "#custom-status")
    d.find_element(By.ID, "event-name").send_keys("approve")
    d.find_element(By.ID, "event-data").send_keys('"granted"')
    d.find_element(By.ID, "btn-event").click()
    wait_until(d, lambda d: "sent" in text_of(d, "#flash"), "the event flash")
    d.execute_script("window.__no_reload = true;")
    wait_until(d, lambda d: "completed" in text_of(d, "#status"), "approval-1 completed (live)")
    assert d.execute_script("return window.__no_reload === true;"), "the page reloaded"
    assert "granted" in text_of(d, "#output")
    rows = attrs(d, "#timeline tbody tr", "data-type")
    assert rows[0] == "OrchestrationStarted" and "EventRaised" in rows
    assert rows[-1] == "OrchestrationCompleted"

    # a parent and its children, both ways
    d.get(url + "/instance?id=fanout-1")
    children = d.find_elements(By.CSS_SELECTOR, "#children a")
    assert [c.text for c in children] == ["fanout-1:sub:2", "fanout-1:sub:3", "fanout-1:sub:4"]
    durations = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#timeline td.dur") if e.text]
    assert len(durations) >= 6  # three sub-orchestrations, opened and closed
    shoot(d, tmp_path, "instance")
    children[0].click()
    wait_until(d, lambda d: text_of(d, "#parent") == "fanout-1", "the parent link")

    # a failure: its type, message and traceback
    d.get(url + "/instance?id=payment-failed")
    failure = text_of(d, "#failure")
    assert "ValueError" in failure and "flaky failure 1" in failure
    traceback = text_of(d, "#traceback")
    assert "Traceback (most recent call last)" in traceback and "flaky failure 1" in traceback
    shoot(d, tmp_path, "failure")

    # cancel, then purge (with its confirmation)
    d.get(url + "/instance?id=approval-2")
    d.find_element(By.ID, "btn-cancel").click()
    wait_until(d, lambda d: "cancelled" in text_of(d, "#status"), "approval-2 cancelled (live)")
    d.refresh()  # the purge form of a terminal instance has no "force" box
    d.find_element(By.ID, "btn-purge").click()
    wait_until(d, lambda d: d.switch_to.alert, "the confirmation")
    d.switch_to.alert.accept()
    wait_until(d, lambda d: "purged 1 instance" in text_of(d, "#flash"), "the purge flash")
    d.get(url + "/instance?id=approval-2")
    assert text_of(d, "#not-found")

    # workers and sessions
    d.find_element(By.ID, "nav-workers").click()
    row = wait_until(
        d, lambda d: d.find_elements(By.CSS_SELECTOR, "#workers tr[data-worker]"), "worker row"
    )
    assert str(worker.pid) in row[0].text
    worker_id = row[0].get_attribute("data-worker")
    assert text_of(d, "#workers td.owned") == "1"  # chat-1's session, from its record
    assert "chat-1" in text_of(d, "#open-sessions") and worker_id in text_of(d, "#open-sessions")
    d.find_element(By.LINK_TEXT, "chat-1").click()
    wait_until(d, lambda d: worker_id in text_of(d, "#sessions"), "chat-1's session owner")
    d.back()
    shoot(d, tmp_path, "workers")
    (marker_dir / "release-x").touch()
    errors = [e for e in d.get_log("browser") if e.get("source") == "javascript"]
    assert not errors, errors


def test_read_only_and_token_in_the_browser(
    redis_url: str, namespace: str, pool: Any, dashboard: Any, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    pool.start()
    seed(redis_url, namespace, marker_dir)
    token = "browser-token-1234"
    url = dashboard.start("--read-only", token=token)
    d = browser
    d.get(url + "/instance?id=approval-1")
    assert "needs its token" in d.find_element(By.TAG_NAME, "body").text
    d.get(url + f"/instance?id=approval-1&token={token}")
    wait_until(d, lambda d: "running" in text_of(d, "#status"), "the page after the token")
    assert token not in d.current_url
    assert not d.find_elements(By.ID, "actions")
    assert "read-only" in text_of(d, "header")
    d.get(url + "/workers")  # the cookie carries on
    wait_until(d, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-worker]"), "worker row")


def test_instance_page_follows_the_progress_stream_live(
    redis_url: str, namespace: str, pool: Any, dashboard: Any, browser: Any, tmp_path: Path
) -> None:
    """The instance page's panel (EventSource on /instances/{id}/stream, behind the token's
    cookie) shows items as the orchestration appends them, and says when it ended."""
    pool.start("e2e_messaging_app:app")
    token = "browser-token-5678"
    url = dashboard.start(token=token)

    async def start_and_add() -> None:
        async with Client.from_url(redis_url, namespace=namespace) as c:
            await c.start("order", {"dir": str(tmp_path)}, instance_id="order-live")
            assert await c.update("order-live", "add", "apple", timeout=WAIT_S) == 1

    anyio.run(start_and_add)
    d = browser
    d.get(url + f"/instance?id=order-live&token={token}")

    def items(d: Any) -> list[str]:
        return [t.split(" ", 1)[1] for t in attrs(d, "#stream-items li", "textContent")]

    wait_until(d, lambda d: items(d) == ['{"added": "apple"}'], "the first stream item")
    assert text_of(d, "#stream-state") == "following"

    async def add_and_checkout() -> None:
        async with Client.from_url(redis_url, namespace=namespace) as c:
            assert await c.update("order-live", "add", "<b>pear</b>", timeout=WAIT_S) == 2
            await c.raise_event("order-live", "checkout")
            await c.wait_for_completion("order-live", timeout=WAIT_S)

    anyio.run(add_and_checkout)
    wait_until(
        d, lambda d: attrs(d, "#stream-panel", "data-ended") == ["completed"], "the stream's end"
    )
    assert items(d) == ['{"added": "apple"}', '{"added": "<b>pear</b>"}', '{"done": 2}']
    assert not d.find_elements("css selector", "#stream-items b")  # text, not HTML
    assert text_of(d, "#stream-state") == "ended (completed)"
    d.execute_script("document.getElementById('stream-panel').scrollIntoView()")
    shoot(d, tmp_path, "instance-stream")
    errors = [e for e in d.get_log("browser") if e.get("source") == "javascript"]
    assert not errors, errors


def test_jobs_page_retry_a_failed_job_and_schedules(
    redis_url: str, namespace: str, pool: Any, dashboard: Any, browser: Any, tmp_path: Path
) -> None:
    """Click from the overview to the jobs page, open a failed job (its traceback), retry it
    and watch the page turn it completed (live, no reload); pause a schedule and run it now."""
    from selenium.webdriver.common.by import By

    from tests.e2e import e2e_app

    pool.start()

    async def seed_jobs() -> None:
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            failing = await c.enqueue(
                e2e_app.flaky, {"dir": str(tmp_path), "fail_times": 1}, job_id="charge-card-42"
            )
            for who in ("ada", "grace"):
                await (await c.enqueue(e2e_app.whoami, who, job_id=f"greet-{who}")).result(
                    timeout=WAIT_S
                )
            await c.enqueue(e2e_app.whoami, "later", job_id="reminder-1", delay=3600)
            await c.create_schedule(
                "nightly-report",
                e2e_app.whoami,
                "report",
                cron="30 2 * * *",
                timezone="Europe/Paris",
            )
            with anyio.fail_after(WAIT_S):
                while not (await failing.status()).is_terminal:
                    await anyio.sleep(0.05)

    anyio.run(seed_jobs)
    url = dashboard.start()
    d = browser
    d.get(url + "/")
    wait_until(d, lambda d: text_of(d, "#jobs-queued") == "1", "one queued job on the overview")
    assert text_of(d, "#jobs-finished") == "3"
    d.find_element(By.ID, "nav-jobs").click()
    wait_until(d, lambda d: len(attrs(d, "#jobs tr[data-job]", "data-job")) == 4, "four job rows")
    assert "flaky failure 1" in text_of(d, 'tr[data-job="charge-card-42"] td.error')
    shoot(d, tmp_path, "jobs")
    d.find_element(By.ID, "jf-status").send_keys("failed")
    d.find_element(By.ID, "jf-apply").click()
    wait_until(
        d, lambda d: attrs(d, "#jobs tr[data-job]", "data-job") == ["charge-card-42"], "filter"
    )
    d.find_element(By.LINK_TEXT, "charge-card-42").click()
    wait_until(d, lambda d: "failed" in text_of(d, "#job-status"), "the failed job's page")
    traceback = text_of(d, "#job-traceback")
    assert "Traceback (most recent call last)" in traceback and "flaky failure 1" in traceback
    shoot(d, tmp_path, "job-failed")
    d.find_element(By.ID, "btn-retry-job").click()
    wait_until(d, lambda d: "queued again" in text_of(d, "#flash"), "the retry flash")
    d.execute_script("window.__no_reload = true;")
    wait_until(d, lambda d: "completed" in text_of(d, "#job-status"), "the job completed (live)")
    assert d.execute_script("return window.__no_reload === true;"), "the page reloaded"
    assert text_of(d, "#job-result") == "2"  # flaky's second call succeeds

    async def tick_every_second() -> None:  # created now: its jobs would crowd the list above
        async with Client.from_url(redis_url, namespace=namespace, app=e2e_app.app) as c:
            await c.create_schedule("heartbeat", e2e_app.whoami, "beat", every=1)

    anyio.run(tick_every_second)
    d.find_element(By.ID, "nav-schedules").click()
    row = 'tr[data-schedule="heartbeat"]'
    wait_until(d, lambda d: "active" in text_of(d, row + " td.state"), "the schedules")
    wait_until(
        d, lambda d: text_of(d, row + " td.last-job").startswith("sched:heartbeat:"), "a tick"
    )
    assert "Europe/Paris" in text_of(d, 'tr[data-schedule="nightly-report"]')
    d.find_element(By.CSS_SELECTOR, row + " .btn-pause").click()
    wait_until(d, lambda d: "paused" in text_of(d, "#flash"), "the pause flash")
    assert "paused" in text_of(d, row + " td.state")
    assert text_of(d, row + " td.next-run") == "-"
    shoot(d, tmp_path, "schedules")
    d.find_element(By.CSS_SELECTOR, 'tr[data-schedule="nightly-report"] .btn-trigger').click()
    wait_until(d, lambda d: "triggered" in text_of(d, "#flash"), "the trigger flash")
    wait_until(d, lambda d: "completed" in text_of(d, "#job-status"), "the triggered job ran")
    assert "report" in text_of(d, "#job-input")
    errors = [e for e in d.get_log("browser") if e.get("source") == "javascript"]
    assert not errors, errors
