"""The screenshots in docs/screenshots/demo-*.png: the dashboard on the demo's data (not a test).

    .venv/bin/python tests/ops/demo_screenshots.py [OUT_DIR]     # default docs/screenshots

A private Redis, ``durable-redis worker durable_redis.demo:app --processes 2``,
``durable-redis dashboard``, twelve demo conversations (sessions pinned to workers), and headless
chromium taking the pictures while they run (queues, sessions, live workers) and after.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE), str(HERE.parent / "e2e")]

from conftest import CHROMEDRIVER, CHROMIUM, free_port, wait_http  # noqa: E402

from durable_redis.client import Client  # noqa: E402
from durable_redis.demo import _CUSTOMERS, _LINES, Conversation, app  # noqa: E402
from durable_redis.devtools import RedisServer  # noqa: E402


async def start_conversations(url: str, count: int) -> list[str]:
    async with Client.from_url(url, app=app) as client:
        return [
            await client.start(
                "conversation",
                Conversation(customer=_CUSTOMERS[i % len(_CUSTOMERS)], messages=_LINES),
                instance_id=f"support-{_CUSTOMERS[i % len(_CUSTOMERS)]}-{i}",
            )
            for i in range(count)
        ]


def main() -> int:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    with RedisServer() as server:
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "durable_redis.cli", "worker", "durable_redis.demo:app",
                 "--redis-url", server.url, "--processes", "2", "--concurrency", "2"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
            port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "durable_redis.cli", "dashboard", "--redis-url",
                 server.url, "--port", str(port)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/static/dashboard.css")
            ids = asyncio.run(start_conversations(server.url, 12))
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
            try:
                time.sleep(2.5)  # a few turns in: sessions owned, work queued
                for name, path in (
                    ("demo-overview", "/"),
                    ("demo-workers", "/workers"),
                    ("demo-instances", "/instances"),
                    ("demo-running", f"/instance?id={ids[-1]}"),
                ):
                    driver.get(base + path)
                    driver.save_screenshot(str(out / f"{name}.png"))
                asyncio.run(wait_all(server.url, ids))
                driver.get(base + f"/instance?id={ids[0]}")
                driver.save_screenshot(str(out / "demo-instance.png"))
            finally:
                driver.quit()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
                proc.wait(30)
    print(f"screenshots in {out}")
    return 0


async def wait_all(url: str, ids: list[str]) -> None:
    async with Client.from_url(url, app=app) as client:
        for iid in ids:
            await client.wait_for_state(iid, timeout=120)


if __name__ == "__main__":
    sys.exit(main())
