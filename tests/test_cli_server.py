"""``durable-redis server``: a development Redis for the CLI walkthrough, as a real subprocess.

It prints ``export REDIS_URL=...``, serves on loopback with AOF (appendfsync everysec) and
``noeviction`` in its data folder, keeps the data across a restart, refuses a second server on
the same folder or a port in use, and on SIGTERM or Ctrl-C (SIGINT to the process group) exits
0 with its ``redis-server`` child gone.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from durable_redis.cli import main

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


class Served:
    def __init__(self, directory: Path, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("REDIS_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "durable_redis.cli", "server", "--dir", str(directory), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(ROOT),
            start_new_session=True,  # its own process group, as a terminal's job would be
        )
        self.url = self._export_line(timeout=60).removeprefix("export REDIS_URL=")
        self.redis = redis.Redis.from_url(self.url, decode_responses=True)
        self.redis_pid = int(self.redis.info("server")["process_id"])

    def _export_line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                line = self.process.stdout.readline().decode().strip()
                if line.startswith("export REDIS_URL="):
                    return line
                if not line and self.process.poll() is not None:
                    break
        err = self.process.stderr.read().decode() if self.process.stderr else ""
        self.kill()
        raise AssertionError(f"no export line from `durable-redis server`: {err}")

    def stop(self, sig: signal.Signals, *, group: bool = False) -> tuple[int, str]:
        self.redis.close()
        if group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        rc = self.process.wait(timeout=30)
        err = self.process.stderr.read().decode() if self.process.stderr else ""
        assert wait_gone(self.redis_pid, timeout=10), f"redis-server {self.redis_pid} still runs"
        return rc, err

    def kill(self) -> bool:
        """Kill the CLI if it still runs (then its child is orphaned: True); close its pipes."""
        killed = self.process.poll() is None
        if killed:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return killed


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    started: list[Served] = []
    try:
        yield started
    finally:
        for s in started:
            if s.kill():  # the CLI was killed: stop its redis-server child by pid too
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s.redis_pid, signal.SIGKILL)


def test_server_serves_with_aof_and_keeps_data_across_a_restart(
    served: list[Served], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = Served(data, "--port", "0")
    served.append(first)
    assert first.url.startswith("redis://127.0.0.1:")
    r = first.redis
    config = {
        k: r.config_get(k)[k] for k in ("appendonly", "appendfsync", "maxmemory-policy", "bind")
    }
    assert config == {
        "appendonly": "yes",
        "appendfsync": "everysec",
        "maxmemory-policy": "noeviction",
        "bind": "127.0.0.1",
    }
    assert r.config_get("dir")["dir"] == str(data.resolve())
    assert tuple(map(int, r.info("server")["redis_version"].split(".")[:2])) >= (7, 0)
    r.set("kept", "yes")
    # The CLI's client commands work against it (an unknown instance: rc 1, a clear message).
    assert main(["status", "nope", "--redis-url", first.url]) == 1

    # A second server on the same folder is refused: two would write the same AOF.
    clash = subprocess.run(
        [sys.executable, "-m", "durable_redis.cli", "server", "--dir", str(data), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
    )
    assert clash.returncode == 2
    assert "in use by another `durable-redis server`" in clash.stderr

    rc, err = first.stop(signal.SIGTERM)
    assert rc == 0, err
    assert "stopping Redis" in err
    assert "Traceback" not in err

    # Restarted on the same folder, and stopped the way a terminal's Ctrl-C does it.
    again = Served(data, "--port", "0")
    served.append(again)
    assert again.redis.get("kept") == "yes"
    rc, err = again.stop(signal.SIGINT, group=True)
    assert rc == 0, err
    assert "Traceback" not in err


def test_a_port_in_use_is_refused_with_a_hint(
    served: list[Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = Served(tmp_path / "one", "--port", "0")
    served.append(first)
    port = first.url.rsplit(":", 1)[1].split("/")[0]
    assert main(["server", "--dir", str(tmp_path / "two"), "--port", port]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and "--port 0" in err
