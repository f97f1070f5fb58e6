"""The dashboard's server-sent events (``GET /instances/{id}/stream``) against a real worker
process and ``durable-redis dashboard`` as its own process, read by a plain HTTP client:
items as they are appended, resuming from ``Last-Event-ID`` / ``?from=``, the end, the token."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from tests.e2e.e2e_helpers import WorkerPool, eventually

pytestmark = [pytest.mark.timeout(90), pytest.mark.e2e]

TOKEN = "s3cret-token-for-sse-tests"


class EventReader:
    """Reads one event stream in a thread, parsing events as they arrive."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.request = urllib.request.Request(url, headers=headers or {})
        self.events: list[dict[str, Any]] = []
        self.comments = 0
        self.content_type = ""
        self.error: BaseException | None = None
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with urllib.request.urlopen(self.request, timeout=30) as reply:
                self.content_type = reply.headers.get("content-type", "")
                event: dict[str, Any] = {}
                for raw in reply:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if not line:
                        if event:
                            self.events.append(event)
                        event = {}
                    elif line.startswith(":"):
                        self.comments += 1
                    else:
                        field, _, value = line.partition(":")
                        event[field] = value.removeprefix(" ")
        except BaseException as exc:
            self.error = exc
        finally:
            self.closed.set()

    def items(self) -> list[tuple[str, Any]]:
        return [(e["id"], json.loads(e["data"])) for e in self.events if e.get("event") == "item"]

    def end(self) -> Any:
        ends = [json.loads(e["data"]) for e in self.events if e.get("event") == "end"]
        return ends[0] if ends else None

    def wait_closed(self, timeout: float = 30) -> EventReader:
        assert self.closed.wait(timeout), "the event stream did not end"
        assert self.error is None, self.error
        return self


@pytest.mark.anyio
async def test_stream_follows_items_live_resumes_from_last_event_id_and_ends(
    redis_url: str, namespace: str, pool: WorkerPool, dashboard: Any, tmp_path: Path
) -> None:
    pool.start("e2e_messaging_app:app")
    url = dashboard.start(token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with Client.from_url(redis_url, namespace=namespace) as client:
        await client.start("order", {"dir": str(tmp_path)}, instance_id="o/1")
        assert await client.update("o/1", "add", "apple", timeout=20) == 1
        stream_url = f"{url}/instances/o%2F1/stream"

        live = EventReader(stream_url, auth)
        await eventually(lambda: live.items(), message="the first item", timeout=20)
        assert live.content_type.startswith("text/event-stream")
        assert live.items() == [(live.items()[0][0], {"added": "apple"})]
        assert not live.closed.is_set()  # the instance runs: the stream stays open

        assert await client.update("o/1", "add", "pear", timeout=20) == 2  # arrives live
        await eventually(lambda: len(live.items()) == 2, message="the live item", timeout=20)
        await client.raise_event("o/1", "checkout")
        assert await client.wait_for_completion("o/1", timeout=20) == {"items": ["apple", "pear"]}
        await anyio.to_thread.run_sync(live.wait_closed)
        values = [v for _, v in live.items()]
        assert values == [{"added": "apple"}, {"added": "pear"}, {"done": 2}]
        assert live.end() == {"status": "completed"}
        offsets = [o for o, _ in live.items()]
        assert offsets == [o for o, _ in [(i.offset, i.value) async for i in client.stream("o/1")]]

    # a reconnect sends Last-Event-ID: only what came after it, then the end at once
    again = EventReader(stream_url, {**auth, "Last-Event-ID": offsets[0]})
    await anyio.to_thread.run_sync(again.wait_closed)
    assert [v for _, v in again.items()] == values[1:] and again.end() == {"status": "completed"}
    from_param = EventReader(f"{stream_url}?from={offsets[1]}", auth)
    await anyio.to_thread.run_sync(from_param.wait_closed)
    assert from_param.items() == live.items()[2:]


@pytest.mark.anyio
async def test_stream_needs_the_token_and_refuses_bad_requests(
    redis_url: str, namespace: str, dashboard: Any
) -> None:
    url = dashboard.start(token=TOKEN)
    async with Client.from_url(redis_url, namespace=namespace) as client:
        await client.start("order", {}, instance_id="o-2")  # no worker: it stays pending

    def status(path: str, headers: dict[str, str]) -> int:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url + path, headers=headers), timeout=10
            ) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert status("/instances/o-2/stream", {}) == 401
    assert status("/instances/o-2/stream", {"Authorization": "Bearer wrong-token"}) == 401
    assert status("/instances/o-2/stream?from=not-an-offset", auth) == 400
    assert status("/instances/o-2/stream", {**auth, "Last-Event-ID": "x"}) == 400
    assert status("/instances/nobody/stream", auth) == 404
    pending = EventReader(f"{url}/instances/o-2/stream", auth)  # open, nothing yet
    await eventually(lambda: pending.content_type != "", message="the stream to open")
    assert pending.content_type.startswith("text/event-stream") and not pending.closed.is_set()
