"""Fixtures of the operations tests (dashboard, workers, doctor, metrics).

- ``http``: the dashboard app over Starlette's TestClient (no server process).
- ``pool``: real worker processes (``python -m durable_redis.runtime e2e_app:app``, the e2e
  suite's app and short leases) on the session's private Redis, killed by pid at teardown.
- ``dashboard``: ``durable-redis dashboard`` as a real subprocess on a free loopback port,
  waited for on ``/healthz``, killed by pid at teardown. ``dashboard.start(*flags)``.
- ``browser``: headless Debian chromium driven by selenium through /usr/bin/chromedriver (no
  browser download). Missing chromium FAILS the test with the install line, unless
  ``DURABLE_REDIS_SKIP_BROWSER=1`` is set, which skips it and says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.e2e_helpers import WorkerPool

HERE = Path(__file__).resolve().parent
E2E = HERE.parent / "e2e"
ROOT = HERE.parents[1]


CHROMIUM = os.environ.get("DURABLE_REDIS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DURABLE_REDIS_CHROMEDRIVER", "/usr/bin/chromedriver")
SKIP_BROWSER_ENV = "DURABLE_REDIS_SKIP_BROWSER"
INSTALL_HINT = "apt-get install -y chromium chromium-driver && pip install selenium"


@pytest.fixture
def http(redis_url: str, namespace: str) -> Iterator[Any]:
    """``http(**create_app options)``: the dashboard app in Starlette's TestClient, as if at
    http://127.0.0.1:8080; closed at teardown."""
    from starlette.testclient import TestClient

    from durable_redis.dashboard import create_app

    def make(**options: Any) -> TestClient:
        app = create_app(redis_url, namespace=namespace, **options)
        client = TestClient(app, base_url="http://127.0.0.1:8080")
        clients.append(client)
        return client.__enter__()

    clients: list[TestClient] = []
    try:
        yield make
    finally:
        for c in clients:
            c.__exit__(None, None, None)


@pytest.fixture
def pool(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[WorkerPool]:
    workers = WorkerPool(redis_url, namespace, tmp_path)
    try:
        yield workers
    finally:
        workers.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status < 500:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout}s: {last}")


@dataclass
class Dashboard:
    redis_url: str
    namespace: str
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)
    url: str = ""

    def start(self, *flags: str, token: str | None = None) -> str:
        port = free_port()
        log = (self.log_dir / f"dashboard-{port}.log").open("wb")
        self.logs.append(log)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": self.redis_url}
        if token is not None:
            env["DURABLE_REDIS_DASHBOARD_TOKEN"] = token
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "durable_redis.cli",
                "dashboard",
                "--namespace",
                self.namespace,
                "--port",
                str(port),
                *flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(ROOT),
        )
        self.processes.append(proc)
        self.url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.url}/static/dashboard.css", proc=proc)
        return self.url

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for log in self.logs:
            log.close()


@pytest.fixture
def dashboard(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Dashboard]:
    board = Dashboard(redis_url, namespace, tmp_path)
    try:
        yield board
    finally:
        board.close()


def browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)) and shutil.which(path) is None:
            return f"{path} not found"
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = browser_missing()
    if missing is not None:
        message = (
            f"the dashboard browser tests did not run: {missing}. Install the browser with "
            f"`{INSTALL_HINT}`, or set {SKIP_BROWSER_ENV}=1 to skip them on purpose."
        )
        if os.environ.get(SKIP_BROWSER_ENV) == "1":  # asked for: the run says it, not a hidden skip
            pytest.skip(f"not applicable: {SKIP_BROWSER_ENV}=1 is set: {message}")
        pytest.fail(message, pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
