"""The ``durable-redis`` command line against a real Redis, with real worker processes.

The orchestrations the commands drive are defined here (``test_cli:app``) and served by
``durable-redis worker test_cli:app --processes 2`` started as a subprocess. Client commands run
in-process through ``cli.main`` (output captured); ``demo`` runs as a subprocess, bounded in time.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
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


@app.activity
def lookup_customer(ctx: ActivityContext, customer: int) -> str:
    raise KeyError(f"no such customer {customer}")


@app.orchestration
async def fail_in_group(ctx: OrchestrationContext, customer: int) -> Any:
    async def one() -> str:
        return await ctx.call_activity(lookup_customer, customer)

    async with asyncio.TaskGroup() as group:
        group.create_task(one())
    return None


@app.orchestration
async def many_waits(ctx: OrchestrationContext, value: Any) -> Any:
    """Waits on a timer, an event and an activity no worker has, with a session open."""
    session = await ctx.open_session()
    ctx.set_custom_status("waiting")
    timer = ctx.sleep(3600)
    go = ctx.wait_for_event("go")
    unknown = ctx.call_activity("no-such-activity", value, session=session)
    winner = await ctx.when_any([timer, go, unknown])
    return "go" if winner is go else "other"


@app.orchestration
async def with_updates(ctx: OrchestrationContext, start: int) -> int:
    """Answers ``add`` updates, keeps ``count`` in its state, streams each change, takes
    ``stop`` from its ``control`` queue (docs/messaging.md)."""
    count = start

    def add(n: int) -> int:
        nonlocal count
        count += n
        ctx.set_value("count", count)
        ctx.append_stream({"count": count})
        return count

    def positive(n: object) -> None:
        if not isinstance(n, int) or n <= 0:
            raise ValueError("add a positive int")

    ctx.set_update_handler("add", add, validator=positive)
    ctx.set_value("count", count)
    await ctx.dequeue_event("control")
    return count


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
def cli_worker(redis_url: str, cli_namespace: str, tmp_path_factory: Any) -> Iterator[Path]:
    """``durable-redis worker test_cli:app --processes 2``, stopped with SIGTERM at the end.

    Yields the path of its log (stdout and stderr)."""
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
        yield log
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
    capsys: pytest.CaptureFixture[str], redis_url: str, cli_namespace: str, cli_worker: Path
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
    assert "pass --force" in err and "force=True" not in err
    code, out, _ = cli("purge", running, "--force")
    assert code == 0 and "purged 1" in out


def test_unknown_instance(cli: Run) -> None:
    code, out, _ = cli("status", "no-such-instance", "--json")
    assert code == 1
    assert as_json(out)["error"]["type"] == "InstanceNotFoundError"
    for command in ("history", "describe", "wait"):
        code, _, err = cli(command, "no-such-instance")
        assert code == 1 and "InstanceNotFoundError: no instance 'no-such-instance'" in err


def wait_for_log(log: Path, predicate: Callable[[str], bool], what: str) -> list[str]:
    """The log's lines that satisfy ``predicate``, once there is one (bounded)."""
    deadline = time.monotonic() + 20
    while True:
        lines = [line for line in log.read_text(errors="replace").splitlines() if predicate(line)]
        if lines:
            return lines
        assert time.monotonic() < deadline, f"no {what} in the log:\n{log.read_text()}"
        time.sleep(0.05)


# -- an unreachable Redis -------------------------------------------------------------------
def _closed_port_url() -> str:
    with socket.socket() as listener:  # bound, then closed: nothing listens on it
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_unreachable_redis_is_said_at_once_and_given_up_on_fast(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = _closed_port_url()
    for argv in (["status", "x"], ["list"], ["worker", "test_cli:app"]):
        started = time.monotonic()
        code = main([*argv, "--redis-url", url])
        elapsed = time.monotonic() - started
        err = capsys.readouterr().err
        assert code == 1, err
        assert elapsed < 6, f"{argv}: {elapsed:.1f}s"  # the default --connect-timeout is 2 s
        assert err.count("retrying") == 1, err  # said once without -v
        assert f"Redis at {url} unreachable" in err and "--connect-timeout 2" in err
        assert "StoreUnavailableError" in err and "gave up after 2s" in err


def test_connect_timeout_waits_as_asked_and_v_shows_each_attempt(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    code = main(["status", "x", "--redis-url", _closed_port_url(), "--connect-timeout", "1.5s"])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 1
    assert 1.4 <= elapsed < 6, elapsed
    code = main(["list", "--redis-url", _closed_port_url(), "--connect-timeout", "1", "-v"])
    captured = capsys.readouterr()
    assert code == 1 and captured.err.count("retrying") >= 2, captured.err
    code = main(["list", "--redis-url", _closed_port_url(), "--connect-timeout", "0.2", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    error = as_json(captured.out)["error"]
    assert error["type"] == "StoreUnavailableError" and "unreachable" in error["message"]


# -- help, version, usage -------------------------------------------------------------------
def test_every_help_lists_the_exit_codes() -> None:
    from durable_redis.cli import _parser

    parser = _parser()
    helps = {"durable-redis": parser.format_help()}
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():  # type: ignore[union-attr]
            helps[name] = sub.format_help()
    assert {"worker", "start", "wait", "describe", "cancel", "raise-event"} <= set(helps)
    for name, text in helps.items():
        assert "exit codes:" in text, name
        assert re.search(r"^\s+3\s+timed out waiting", text, re.M), name
        assert re.search(r"^\s+4\s+the instance has already ended", text, re.M), name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import durable_redis

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"durable-redis {durable_redis.__version__}\n"


def test_usage_errors_under_json_are_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["start"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: durable-redis start ") and "required: name" in err
    assert main(["no-such-command", "--json"]) == 2
    error = as_json(capsys.readouterr().out)["error"]
    assert error["type"] == "UsageError" and "invalid choice" in error["message"]
    assert main(["list", "--since", "yesterday", "--redis-url", "redis://x", "--json"]) == 2
    assert "--since 'yesterday'" in as_json(capsys.readouterr().out)["error"]["message"]


def test_worker_options_from_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from durable_redis._cli_commands import _worker_options
    from durable_redis.cli import _parser

    args = _parser().parse_args(
        ["worker", "m:app", "--lock-timeout", "5s", "--retention", "1h", "--janitor-interval",
         "off", "--session-idle-timeout", "2m", "--session-lock-timeout", "90",
         "--max-attempts", "3", "--shutdown-grace", "1.5", "--orchestration-concurrency", "2",
         "--max-sessions", "7", "--concurrency", "5", "--turn-timeout", "500ms",
         "--max-turn-crashes", "4"]
    )  # fmt: skip
    options = _worker_options(args)
    assert (options.lock_timeout, options.retention, options.janitor_interval) == (5, 3600, None)
    assert (options.session_idle_timeout, options.session_lock_timeout) == (120, 90)
    assert (options.max_attempts, options.shutdown_grace_period) == (3, 1.5)
    assert (options.orchestration_concurrency, options.max_sessions_per_worker) == (2, 7)
    assert options.activity_concurrency == 5
    assert (options.turn_timeout, options.max_turn_crashes) == (0.5, 4)
    args = _parser().parse_args(["worker", "m:app", "--turn-timeout", "off"])
    assert _worker_options(args).turn_timeout is None
    args = _parser().parse_args(["worker", "m:app", "--janitor-interval", "10m"])
    assert _worker_options(args).janitor_interval == 600
    assert main(["worker", "m:app", "--lock-timeout", "0", "--redis-url", "redis://x"]) == 2
    assert "bad worker option" in capsys.readouterr().err
    assert main(["worker", "m:app", "--retention", "soon", "--redis-url", "redis://x"]) == 2
    assert "--retention 'soon' is not a duration" in capsys.readouterr().err


def test_log_lines_name_their_instance_session_and_worker() -> None:
    from durable_redis.runtime.logs import TEXT_FORMAT, JsonLinesFormatter, TextFormatter

    record = logging.LogRecord(
        "durable_redis.x", logging.INFO, __file__, 1, "session claimed", (), None
    )
    record.instance_id, record.session_id, record.worker_id = "order-1", "session-2", "w-1"
    text = TextFormatter(TEXT_FORMAT).format(record)
    assert text.endswith("session claimed [instance=order-1 session=session-2 worker=w-1]")
    line = json.loads(JsonLinesFormatter().format(record))
    assert line["message"] == "session claimed" and line["level"] == "INFO"
    assert (line["instance_id"], line["session_id"], line["worker_id"]) == (
        "order-1",
        "session-2",
        "w-1",
    )
    bare = logging.LogRecord("durable_redis.x", logging.INFO, __file__, 1, "hello", (), None)
    assert TextFormatter(TEXT_FORMAT).format(bare).endswith("durable_redis.x: hello")


# -- ended instances ------------------------------------------------------------------------
def test_cancel_and_raise_event_on_an_ended_instance_exit_4(cli: Run) -> None:
    done = f"ended-{uuid.uuid4().hex[:8]}"
    assert cli("start", "echo", "--input", "1", "--id", done, "--wait", "20")[0] == 0
    code, out, err = cli("cancel", done)
    assert code == 4, out + err
    assert f"InstanceTerminalError: instance '{done}' has already ended (completed)" in err
    code, out, _ = cli("raise-event", done, "go", "--json")
    assert code == 4
    assert as_json(out)["error"]["type"] == "InstanceTerminalError"
    state = as_json(cli("status", done, "--json")[1])
    assert state["status"] == "completed" and state["output"] == {"echo": 1}

    code, out, _ = cli("start", "wait_for_go", "--json")
    cancelled = as_json(out)["instance_id"]
    wait_until(cli, cancelled, lambda s: s["status"] == "running")
    assert cli("cancel", cancelled)[0] == 0
    wait_until(cli, cancelled, lambda s: s["status"] == "cancelled")
    code, _, err = cli("raise-event", cancelled, "go")
    assert code == 4 and "(cancelled)" in err


# -- failures -------------------------------------------------------------------------------
def test_a_failure_reads_well_in_status_and_the_worker_log(cli: Run, cli_worker: Path) -> None:
    failed = f"fail-{uuid.uuid4().hex[:8]}"
    code, out, _ = cli("start", "fail_in_group", "--input", "7", "--id", failed, "--wait", "20")
    assert code == 1, out
    code, out, _ = cli("status", failed)
    assert code == 0
    cause = "ActivityFailedError: activity 'lookup_customer' failed: KeyError: 'no such customer 7'"
    assert re.search(
        r"^error\s+\[application\] ExceptionGroup: unhandled errors in a TaskGroup "
        r"\(1 sub-exception\): " + re.escape(cause) + "$",
        out,
        re.M,
    ), out
    assert "traceback (of the ExceptionGroup):" in out
    assert 'raise KeyError(f"no such customer {customer}")' in out  # the activity's own line
    state = as_json(cli("status", failed, "--json")[1])
    assert 'raise KeyError(f"no such customer {customer}")' in state["error"]["traceback"]

    lines = wait_for_log(cli_worker, lambda line: f"orchestration {failed} failed" in line, "ERROR")
    assert len(lines) == 1, lines
    assert " ERROR " in lines[0] and cause in lines[0]
    assert f"[instance={failed} worker=" in lines[0]


def test_history_shows_iso_times_and_decoded_payloads(cli: Run) -> None:
    instance_id = f"hist-{uuid.uuid4().hex[:8]}"
    assert cli("start", "many_waits", "--input", '{"k": 1}', "--id", instance_id)[0] == 0
    wait_until(cli, instance_id, lambda s: s["custom_status"] == "waiting")
    code, out, _ = cli("history", instance_id)
    assert code == 0
    assert re.search(r'TimerCreated\s+.*fire_at="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"', out), out
    assert "fire_at_ms" not in out
    assert re.search(r'ActivityScheduled\s+.*input=\{"k": 1\}', out), out
    assert cli("purge", instance_id, "--force")[0] == 0


# -- describe and wait ----------------------------------------------------------------------
def test_describe_lists_what_an_instance_waits_on(cli: Run) -> None:
    instance_id = f"desc-{uuid.uuid4().hex[:8]}"
    assert cli("start", "many_waits", "--input", '{"k": 1}', "--id", instance_id)[0] == 0
    wait_until(cli, instance_id, lambda s: s["custom_status"] == "waiting")
    code, out, _ = cli("describe", instance_id, "--json")
    assert code == 0
    described = as_json(out)
    assert described["instance"]["status"] == "running"
    (session,) = described["sessions"]
    (activity,) = described["activities"]
    assert activity["name"] == "no-such-activity"
    assert activity["session_id"] == session["session_id"]
    (timer,) = described["timers"]
    assert timer["fire_at"] > described["instance"]["created_at"]
    assert described["waits"] == [{"event": "go", "waiting": 1}]
    assert described["children"] == [] and described["buffered_events"] == []

    code, out, _ = cli("describe", instance_id)
    assert code == 0
    assert re.search(r"^activities:\s+#\d+ no-such-activity \(attempt 1, session ", out, re.M), out
    assert re.search(r"^timers:\s+#\d+ fires at \d{4}-", out, re.M), out
    assert re.search(r"^waits:\s+event 'go'$", out, re.M), out

    assert cli("raise-event", instance_id, "go")[0] == 0
    code, out, _ = cli("wait", instance_id, "--timeout", "20", "--json")
    assert code == 0 and as_json(out)["output"] == "go"
    code, out, _ = cli("describe", instance_id)
    assert code == 0 and "(the instance has ended: it waits on nothing)" in out


def test_wait_exit_codes(cli: Run) -> None:
    code, out, _ = cli("start", "wait_for_go", "--json")
    instance_id = as_json(out)["instance_id"]
    wait_until(cli, instance_id, lambda s: s["status"] == "running")
    code, out, _ = cli("wait", instance_id, "--timeout", "0.3", "--json")
    assert code == 3
    assert as_json(out)["timed_out"] is True and as_json(out)["status"] == "running"
    assert cli("raise-event", instance_id, "go", "--data", "5")[0] == 0
    code, out, _ = cli("wait", instance_id, "--timeout", "20")
    assert code == 0 and re.search(r"^output\s+5$", out, re.M), out

    failed = f"fail-{uuid.uuid4().hex[:8]}"
    assert cli("start", "fail_in_group", "--input", "1", "--id", failed)[0] == 0
    code, out, _ = cli("wait", failed, "--timeout", "20")
    assert code == 1 and re.search(r"^status\s+failed$", out, re.M), out


# -- start options --------------------------------------------------------------------------
def test_start_if_exists(cli: Run) -> None:
    instance_id = f"exists-{uuid.uuid4().hex[:8]}"
    assert cli("start", "echo", "--input", "1", "--id", instance_id, "--wait", "20")[0] == 0
    code, _, err = cli("start", "echo", "--input", "2", "--id", instance_id)
    assert code == 1 and "InstanceExistsError" in err
    assert (
        cli("start", "echo", "--input", "2", "--id", instance_id, "--if-exists", "ignore")[0] == 0
    )
    assert as_json(cli("status", instance_id, "--json")[1])["output"] == {"echo": 1}
    code, out, _ = cli(
        "start", "echo", "--input", "3", "--id", instance_id, "--if-exists", "replace-if-ended",
        "--wait", "20", "--json",
    )  # fmt: skip
    assert code == 0 and as_json(out)["output"] == {"echo": 3}


def test_start_later_and_at_a_version(cli: Run) -> None:
    later = f"later-{uuid.uuid4().hex[:8]}"
    code, out, _ = cli("start", "echo", "--input", "1", "--id", later, "--delay", "2s")
    assert code == 0 and "(first turn at " in out
    code, out, _ = cli("wait", later, "--timeout", "20", "--json")
    assert code == 0
    state = as_json(out)
    created = datetime.fromisoformat(state["created_at"].replace("Z", "+00:00"))
    completed = datetime.fromisoformat(state["completed_at"].replace("Z", "+00:00"))
    assert completed - created >= timedelta(seconds=1.9)  # on the Redis clock

    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="milliseconds")
    code, out, _ = cli("start", "echo", "--input", "1", "--start-at", at, "--wait", "20")
    assert code == 0, out
    code, _, err = cli("start", "echo", "--start-at", at, "--delay", "1s")
    assert code == 2 and "not allowed with argument" in err

    versioned = f"versioned-{uuid.uuid4().hex[:8]}"
    assert cli("start", "echo", "--id", versioned, "--version", "v9")[0] == 0
    code, out, _ = cli("status", versioned)
    assert code == 0 and re.search(r"^name\s+echo \(version v9\)$", out, re.M), out
    assert cli("purge", versioned, "--force")[0] == 0


# -- list -----------------------------------------------------------------------------------
def test_list_newest_first_and_since(cli: Run) -> None:
    first, second = (f"order-{uuid.uuid4().hex[:8]}-{i}" for i in range(2))
    for instance_id in (first, second):
        assert cli("start", "echo", "--input", "1", "--id", instance_id, "--wait", "20")[0] == 0

    def listed(*args: str) -> list[str]:
        code, out, _ = cli("list", "--name", "echo", "--limit", "500", "--json", *args)
        assert code == 0
        return [i["instance_id"] for i in as_json(out)["instances"]]

    newest = listed("--since", "10m")
    assert newest.index(second) < newest.index(first)
    oldest = listed("--since", "10m", "--oldest-first")
    assert oldest.index(first) < oldest.index(second)
    since = as_json(cli("status", second, "--json")[1])["created_at"]
    after = listed("--since", since)
    assert second in after and first not in after


# -- payloads from files and stdin -----------------------------------------------------------
def test_payloads_from_a_file_and_stdin(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = {"blob": "x" * 200_000}  # more than one argv string may carry (128 KiB)
    path = tmp_path / "input.json"
    path.write_text(json.dumps(big))
    code, out, _ = cli("start", "echo", "--input", f"@{path}", "--wait", "20", "--json")
    assert code == 0 and as_json(out)["output"] == {"echo": big}
    code, _, err = cli("start", "echo", "--input", f"@{tmp_path / 'missing.json'}")
    assert code == 2 and "cannot read" in err
    path.write_text("{nope")
    code, _, err = cli("start", "echo", "--input", f"@{path}")
    assert code == 2 and f"--input (from {path}) is not valid JSON" in err

    code, out, _ = cli("start", "wait_for_go", "--json")
    instance_id = as_json(out)["instance_id"]
    wait_until(cli, instance_id, lambda s: s["status"] == "running")
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"from": "stdin"}'))
    assert cli("raise-event", instance_id, "go", "--data", "-")[0] == 0
    state = wait_until(cli, instance_id, lambda s: s["status"] == "completed")
    assert state["output"] == {"from": "stdin"}


# -- worker output ----------------------------------------------------------------------------
def _echo_through(
    worker_argv: list[str], env: dict[str, str], redis_url: str, namespace: str, log: Path
) -> str:
    """Start the worker process, run one ``echo`` through it in ``namespace``, stop it with
    SIGTERM (it must exit 0); return its log."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *worker_argv],
            cwd=str(ROOT),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        argv = ["start", "echo", "--input", "1", "--wait", "20"]
        assert main([*argv, "--redis-url", redis_url, "--namespace", namespace]) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0, log.read_text()
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError("worker did not stop on SIGTERM\n" + log.read_text()) from None
    return log.read_text()


def test_worker_json_logs_say_what_it_registered(
    capsys: pytest.CaptureFixture[str], redis_url: str, tmp_path: Path
) -> None:
    namespace = f"t-cli-json-{uuid.uuid4().hex[:8]}"
    worker = ["durable_redis.cli", "worker", "test_cli:app", "--json"]
    worker += ["--redis-url", redis_url, "--namespace", namespace]
    text = _echo_through(worker, _env(), redis_url, namespace, tmp_path / "worker.log")
    capsys.readouterr()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line
    assert records[0]["message"].startswith("1 worker process(es) for test_cli:app")
    (started,) = [r for r in records if " started for app " in r["message"]]
    assert "orchestrations echo, fail_in_group, many_waits, wait_for_go" in started["message"]
    assert "activities lookup_customer, shout" in started["message"]
    assert started["worker_id"] and started["level"] == "INFO"


def test_runtime_module_reads_the_namespace_from_the_environment(
    capsys: pytest.CaptureFixture[str], redis_url: str, tmp_path: Path
) -> None:
    namespace = f"t-cli-env-{uuid.uuid4().hex[:8]}"
    env = _env(REDIS_URL=redis_url, DURABLE_REDIS_NAMESPACE=namespace)
    worker = ["durable_redis.runtime", "test_cli:app"]
    text = _echo_through(worker, env, redis_url, namespace, tmp_path / "worker.log")
    capsys.readouterr()
    assert re.search(r" started for app 'cli-test': .* \[worker=\S+\]$", text, re.M)


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
    last = re.findall(r"^  (\w+)\s+turn 4/4 done on worker pid \d+$", out, re.M)
    assert sorted(last) == sorted(name for name, _, _ in rows), out  # every last turn shown
    assert "stopped the workers (SIGTERM): exit codes 0, 0" in out
    assert "stopped the private Redis" in out
    assert elapsed < 60, f"demo took {elapsed:.1f}s"


def test_update_get_value_stream_enqueue_event(cli: Run) -> None:
    code, out, _ = cli("start", "with_updates", "--input", "10", "--json")
    assert code == 0
    iid = as_json(out)["instance_id"]
    code, out, _ = cli("update", iid, "add", "--input", "5", "--update-id", "a", "--json")
    assert (code, as_json(out)["result"]) == (0, 15)
    code, out, _ = cli("update", iid, "add", "--input", "5", "--update-id", "a")
    assert (code, out.strip()) == (0, "15")  # the same id: applied once
    code, out, err = cli("update", iid, "add", "--input", "-1")
    assert code == 1 and "UpdateRejectedError" in err and "positive" in err
    code, out, _ = cli("get-value", iid, "count", "--json")
    assert (code, as_json(out)) == (0, {"count": 15, "set": True})
    code, out, _ = cli("get-value", iid)
    assert (code, out.strip()) == (0, "count = 15")
    code, out, _ = cli("get-value", iid, "nope")
    assert (code, out.strip()) == (0, "nope is not set")
    code, out, _ = cli("enqueue-event", iid, "control", "--data", '"stop"', "--json")
    assert code == 0 and as_json(out)["queue"] == "control"
    code, out, _ = cli("stream", iid, "--follow", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["value"] for line in lines] == [{"count": 15}]
    wait_until(cli, iid, lambda s: s["status"] == "completed")
    code, out, err = cli("update", iid, "add", "--input", "1")
    assert code == 4, err  # ended
