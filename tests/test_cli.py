"""The ``durable-redis`` command line against a real Redis, with real worker processes.

The orchestrations the commands drive are defined here (``test_cli:app``) and served by
``durable-redis worker test_cli:app --processes 2`` started as a subprocess. Client commands run
in-process through ``cli.main`` (output captured); ``demo`` runs as a subprocess, bounded in time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from durable_redis.cli import main
from durable_redis.core import ActivityContext, App, OrchestrationContext

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.e2e

app = App("cli-test")


@app.activity
def shout(ctx: ActivityContext, value: Any) -> Any:
    return {"echo": value}


@app.orchestration
async def echo(ctx: OrchestrationContext, value: Any) -> Any:
    return await ctx.call_activity(shout, value)


@app.orchestration
async def wait_for_go(ctx: OrchestrationContext, value: Any) -> Any:
    ctx.set_custom_status("waiting for go")
    return await ctx.wait_for_event("go")


# -- fixtures -----------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def cli_namespace() -> str:
    return f"t-cli-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def cli_worker(redis_url: str, cli_namespace: str, tmp_path_factory: Any) -> Iterator[None]:
    """``durable-redis worker test_cli:app --processes 2``, stopped with SIGTERM at the end."""
    log = tmp_path_factory.mktemp("cli") / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "durable_redis.cli",
                "worker",
                "test_cli:app",
                "--processes",
                "2",
                "--concurrency",
                "4",
                "--redis-url",
                redis_url,
                "--namespace",
                cli_namespace,
            ],
            cwd=str(ROOT),
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # forwarded to both children
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError("worker did not stop on SIGTERM\n" + log.read_text()) from None
        assert code == 0, log.read_text()


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], redis_url: str, cli_namespace: str, cli_worker: None
) -> Run:
    """Run ``durable-redis ARGS --redis-url ... --namespace ...`` in-process: (code, out, err)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--redis-url", redis_url, "--namespace", cli_namespace])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def as_json(out: str) -> Any:
    return json.loads(out)


def wait_until(cli: Run, instance_id: str, predicate: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + 20
    while True:
        code, out, _ = cli("status", instance_id, "--json")
        state = as_json(out) if code == 0 else None
        if state is not None and predicate(state):
            return state
        assert time.monotonic() < deadline, f"timed out waiting on {instance_id}: {state}"
        time.sleep(0.05)


# -- tests -----------------------------------------------------------------------------------
def test_no_url_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    for argv in (["status", "x"], ["list"], ["worker", "test_cli:app"], ["start", "echo"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "no Redis URL given" in err
        assert "--redis-url" in err and "REDIS_URL" in err


def test_no_url_from_a_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "durable_redis.cli", "list"],
        cwd=str(ROOT),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "pass --redis-url" in result.stderr


def test_bad_json_input_is_a_usage_error(cli: Run) -> None:
    code, _, err = cli("start", "echo", "--input", "{nope")
    assert code == 2
    assert "--input is not valid JSON" in err


def test_start_wait_status_history_json(cli: Run) -> None:
    instance_id = f"echo-{uuid.uuid4().hex[:8]}"
    code, out, _ = cli(
        "start", "echo", "--input", '{"a": [1, 2]}', "--id", instance_id, "--wait", "20", "--json"
    )
    assert code == 0, out
    state = as_json(out)
    assert state["instance_id"] == instance_id
    assert state["status"] == "completed"
    assert state["output"] == {"echo": {"a": [1, 2]}}
    assert state["input"] == {"a": [1, 2]}

    code, out, _ = cli("status", instance_id, "--json")
    assert code == 0
    state = as_json(out)
    assert state["status"] == "completed"
    assert state["created_at"].endswith("Z") and state["completed_at"]
    assert state["error"] is None

    code, out, _ = cli("status", instance_id)
    assert code == 0
    assert re.search(r"^status\s+completed$", out, re.M), out
    assert re.search(r'^output\s+\{"echo": \{"a": \[1, 2\]\}\}$', out, re.M), out

    code, out, _ = cli("history", instance_id, "--json")
    assert code == 0
    events = as_json(out)
    types = [e["type"] for e in events]
    assert types[0] == "OrchestrationStarted"
    assert "ActivityScheduled" in types and "ActivityCompleted" in types
    assert types[-1] == "OrchestrationCompleted"
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["output"] == {"echo": {"a": [1, 2]}}

    code, out, _ = cli("history", instance_id)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == len(events)
    assert "OrchestrationStarted" in lines[0] and 'name="echo"' in lines[0]


def test_start_without_wait_then_raise_event(cli: Run) -> None:
    code, out, _ = cli("start", "wait_for_go", "--json")
    assert code == 0
    instance_id = as_json(out)["instance_id"]
    wait_until(cli, instance_id, lambda s: s["custom_status"] == "waiting for go")

    code, out, _ = cli("raise-event", instance_id, "go", "--data", '{"ok": true}', "--json")
    assert code == 0
    assert as_json(out) == {"instance_id": instance_id, "event": "go", "data": {"ok": True}}
    state = wait_until(cli, instance_id, lambda s: s["status"] == "completed")
    assert state["output"] == {"ok": True}


def test_cancel(cli: Run) -> None:
    code, out, _ = cli("start", "wait_for_go")
    assert code == 0
    instance_id = out.split()[-1]
    wait_until(cli, instance_id, lambda s: s["status"] == "running")

    code, out, _ = cli("cancel", instance_id, "--reason", "changed my mind", "--json")
    assert code == 0
    assert as_json(out)["cancel_requested"] is True
    state = wait_until(cli, instance_id, lambda s: s["status"] == "cancelled")
    assert "changed my mind" in state["error"]["message"]


def test_list_filters_and_pagination(cli: Run) -> None:
    ids = [f"list-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    for instance_id in ids:
        assert cli("start", "echo", "--input", "1", "--id", instance_id, "--wait", "20")[0] == 0

    code, out, _ = cli("list", "--name", "echo", "--status", "completed", "--json")
    assert code == 0
    listed = {i["instance_id"] for i in as_json(out)["instances"]}
    assert set(ids) <= listed
    assert all(i["name"] == "echo" for i in as_json(out)["instances"])

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(50):
        args = ["list", "--name", "echo", "--limit", "1", "--json"]
        if cursor:
            args += ["--cursor", cursor]
        code, out, _ = cli(*args)
        assert code == 0
        page = as_json(out)
        assert len(page["instances"]) <= 1
        seen += [i["instance_id"] for i in page["instances"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(ids) <= set(seen)
    assert len(seen) == len(set(seen))

    code, out, _ = cli("list", "--name", "echo")
    assert code == 0
    assert out.startswith("INSTANCE")
    assert all(i in out for i in ids)

    code, out, _ = cli("list", "--name", "no-such-orchestration")
    assert code == 0 and "(no instances)" in out


def test_purge(cli: Run) -> None:
    done = f"purge-{uuid.uuid4().hex[:8]}"
    assert cli("start", "echo", "--input", "1", "--id", done, "--wait", "20")[0] == 0
    code, out, _ = cli("purge", done, "--json")
    assert code == 0
    assert as_json(out) == {"instance_id": done, "deleted": 1}
    code, _, err = cli("status", done)
    assert code == 1 and "no instance" in err

    running = f"purge-{uuid.uuid4().hex[:8]}"
    assert cli("start", "wait_for_go", "--id", running)[0] == 0
    wait_until(cli, running, lambda s: s["status"] == "running")
    code, _, err = cli("purge", running)
    assert code == 1 and "InstanceRunningError" in err
    code, out, _ = cli("purge", running, "--force")
    assert code == 0 and "purged 1" in out


def test_unknown_instance(cli: Run) -> None:
    code, out, _ = cli("status", "no-such-instance", "--json")
    assert code == 1
    assert as_json(out)["error"]["type"] == "InstanceNotFoundError"
    for command in ("history", "describe", "wait"):
        code, _, err = cli(command, "no-such-instance")
        assert code == 1 and "InstanceNotFoundError: no instance 'no-such-instance'" in err


# -- demo -----------------------------------------------------------------------------------
def test_demo_keeps_every_conversation_on_one_worker() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "durable_redis.cli", "demo", "--conversations", "3", "--turns", "4"],
        cwd=str(ROOT),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started = time.monotonic()
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the demo's own process group (its Redis)
        out, err = proc.communicate()
        pytest.fail(f"demo did not finish in time\n{out}\n{err}")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, out + err
    assert "started a private Redis" in out and "AOF on" in out
    workers = re.search(r"started 2 worker processes: pid (\d+), pid (\d+)", out)
    assert workers, out
    worker_pids = {int(workers.group(1)), int(workers.group(2))}
    rows = re.findall(
        r"^  (\w+)\s+session (\S+): all 4 turns on worker pid (\d+); every turn saw the earlier "
        r"ones in memory: yes",
        out,
        re.M,
    )
    assert len(rows) == 3, out
    assert {int(pid) for _, _, pid in rows} <= worker_pids
    assert "every conversation stayed on one worker: yes" in out
    assert re.search(r"turn \d/4 done on worker pid \d+", out)  # progress was shown
    assert "stopped the workers (SIGTERM): exit codes 0, 0" in out
    assert "stopped the private Redis" in out
    assert elapsed < 60, f"demo took {elapsed:.1f}s"
