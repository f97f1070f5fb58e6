"""What the ``durable-redis`` commands do; :mod:`durable_redis.cli` only parses and dispatches.

The client commands print one human-readable block (or, with ``--json``, one JSON document) on
stdout; errors go to stderr with a non-zero exit code. ``demo`` lives in
:mod:`durable_redis._demo_runner`.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from durable_redis.errors import FailureDetails, WaitTimeoutError

__all__ = [
    "Emit",
    "UsageError",
    "plain",
    "redact_url",
    "run_bench_command",
    "run_client_command",
    "run_demo_command",
    "run_worker_command",
]

Emit = Callable[[argparse.Namespace, Any, str], None]


class UsageError(Exception):
    """A command-line mistake: printed without a traceback, exit code 2."""


# -- rendering ------------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """``value`` as JSON-ready data (dataclasses, enums, datetimes, bytes included)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _show(value: Any) -> str:
    """A payload on one line: JSON when possible."""
    if value is None:
        return "-"
    try:
        return json.dumps(plain(value), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def redact_url(url: str) -> str:
    """``url`` without its password (for printing)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def _state_dict(state: Any) -> dict[str, Any]:
    return {
        "instance_id": state.instance_id,
        "name": state.name,
        "version": state.version,
        "status": plain(state.status),
        "execution_id": state.execution_id,
        "created_at": plain(state.created_at),
        "updated_at": plain(state.updated_at),
        "completed_at": plain(state.completed_at),
        "parent_instance_id": state.parent_instance_id,
        "input": plain(state.input),
        "output": plain(state.output),
        "error": plain(state.error),
        "custom_status": plain(state.custom_status),
    }


def _state_text(state: Any) -> str:
    error: FailureDetails | None = state.error
    rows = [
        ("instance", state.instance_id),
        ("name", state.name + (f" (version {state.version})" if state.version else "")),
        ("status", str(plain(state.status))),
        ("execution", str(state.execution_id)),
        ("created", _iso(state.created_at)),
        ("updated", _iso(state.updated_at)),
        ("completed", _iso(state.completed_at) if state.completed_at else "-"),
    ]
    if state.parent_instance_id:
        rows.append(("parent", state.parent_instance_id))
    rows += [
        ("input", _show(state.input)),
        ("output", _show(state.output)),
        ("error", f"[{error.kind}] {error}" if error is not None else "-"),
        ("custom", _show(state.custom_status)),
    ]
    return "\n".join(f"{label:<10} {value}" for label, value in rows)


def _decode_payload(data: bytes) -> Any:
    from durable_redis.core import JsonCodec, MsgpackCodec

    for codec in (MsgpackCodec(), JsonCodec()):
        try:
            return codec.decode(data)
        except Exception:
            continue
    return f"<{len(data)} bytes>"


def _event_dict(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "type": type(event).__name__,
        "timestamp": _iso(datetime.fromtimestamp(event.timestamp_ms / 1000, tz=UTC)),
    }
    for field in dataclasses.fields(event):
        if field.name in ("event_id", "timestamp_ms"):
            continue
        value = getattr(event, field.name)
        if isinstance(value, bytes):
            value = _decode_payload(value)
        out[field.name] = plain(value)
    return out


def _event_text(event: dict[str, Any]) -> str:
    details = []
    for key, value in event.items():
        if key in ("event_id", "type", "timestamp") or value is None or value == []:
            continue
        if key == "failure" and isinstance(value, dict):
            value = f"{value.get('type_name')}: {value.get('message')}"
        details.append(f"{key}={_show(value)}")
    return f"{event['event_id']:>4}  {event['timestamp']}  {event['type']:<28} {' '.join(details)}"


# -- client commands ------------------------------------------------------------------------------
async def run_client_command(args: argparse.Namespace, url: str, emit: Emit) -> int:
    """start / status / list / history / cancel / raise-event / purge against ``url``."""
    from durable_redis.client import Client

    async with Client.from_url(url, namespace=args.namespace) as client:
        command = args.command
        if command == "start":
            return await _start(client, args, emit)
        if command == "status":
            state = await client.get_status(args.instance_id)
            if state is None:
                emit(args, None, f"no instance {args.instance_id!r}")
                return 1
            emit(args, _state_dict(state), _state_text(state))
            return 0
        if command == "list":
            return await _list(client, args, emit)
        if command == "history":
            events = [
                _event_dict(e) for e in await client.get_history(args.instance_id, args.execution)
            ]
            if not events and await client.get_status(args.instance_id) is None:
                emit(args, None, f"no instance {args.instance_id!r}")
                return 1
            emit(args, events, "\n".join(_event_text(e) for e in events) or "(no events)")
            return 0
        if command == "cancel":
            await client.cancel(args.instance_id, args.reason)
            emit(
                args,
                {"instance_id": args.instance_id, "cancel_requested": True},
                f"cancellation requested for {args.instance_id}",
            )
            return 0
        if command == "raise-event":
            data = _json_arg(args.data, "--data")
            await client.raise_event(args.instance_id, args.event, data)
            emit(
                args,
                {"instance_id": args.instance_id, "event": args.event, "data": data},
                f"event {args.event!r} sent to {args.instance_id}",
            )
            return 0
        if command == "purge":
            deleted = await client.purge(args.instance_id, force=args.force)
            emit(
                args,
                {"instance_id": args.instance_id, "deleted": deleted},
                f"purged {deleted} instance(s) ({args.instance_id} and its children)",
            )
            return 0
    raise UsageError(f"unknown command {command!r}")  # pragma: no cover - argparse prevents it


async def _start(client: Any, args: argparse.Namespace, emit: Emit) -> int:
    data = _json_arg(args.input, "--input")
    instance_id = await client.start(args.name, data, instance_id=args.instance_id)
    if args.wait is None:
        emit(
            args,
            {"instance_id": instance_id, "name": args.name},
            f"started {args.name} as {instance_id}",
        )
        return 0
    try:
        state = await client.wait_for_state(instance_id, timeout=args.wait)
    except WaitTimeoutError:
        state = await client.get_status(instance_id)
        result = _state_dict(state) if state is not None else {"instance_id": instance_id}
        result["timed_out"] = True
        emit(
            args,
            result,
            f"started {args.name} as {instance_id}; still "
            f"{result.get('status', 'unknown')} after {args.wait:g}s",
        )
        return 3
    emit(args, _state_dict(state), f"started {args.name} as {instance_id}\n{_state_text(state)}")
    return 0 if str(plain(state.status)) == "completed" else 1


async def _list(client: Any, args: argparse.Namespace, emit: Emit) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    page = await client.list_instances(
        status=args.status, name=args.name, limit=args.limit, cursor=args.cursor
    )
    rows = [_state_dict(s) for s in page.instances]
    lines = [f"{'INSTANCE':<36} {'NAME':<20} {'STATUS':<16} CREATED"]
    lines += [
        f"{r['instance_id']:<36} {r['name']:<20} {r['status']:<16} {r['created_at']}" for r in rows
    ]
    if not rows:
        lines = ["(no instances)"]
    if page.next_cursor:
        lines.append(f"more: --cursor {page.next_cursor}")
    emit(args, {"instances": rows, "next_cursor": page.next_cursor}, "\n".join(lines))
    return 0


# -- worker ---------------------------------------------------------------------------------------
def run_worker_command(args: argparse.Namespace, url: str) -> int:
    """Run ``--processes`` worker processes for ``MODULE:APP`` until SIGTERM/SIGINT."""
    from durable_redis._cli_ops import metrics_arguments
    from durable_redis.runtime import WorkerOptions, run_worker

    if args.processes < 1:
        raise UsageError("--processes must be at least 1")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    fields: dict[str, Any] = {"activity_concurrency": args.concurrency}
    if args.max_sessions is not None:
        fields["max_sessions_per_worker"] = args.max_sessions
    options = WorkerOptions(**fields)
    print(
        f"durable-redis: {args.processes} worker process(es) for {args.app} on "
        f"{redact_url(url)} (namespace {args.namespace!r}); Ctrl-C or SIGTERM stops them",
        file=sys.stderr,
        flush=True,
    )
    log_level = "DEBUG" if args.verbose >= 2 else "INFO"
    return run_worker(
        args.app,
        url,
        options,
        processes=args.processes,
        namespace=args.namespace,
        log_level=log_level,
        **metrics_arguments(args),  # _cli_ops: --metrics-port / --metrics-host
    )


# -- demo -----------------------------------------------------------------------------------------
def run_demo_command(args: argparse.Namespace) -> int:
    from durable_redis.demo import run_demo

    return run_demo(
        redis_url=args.redis_url,
        namespace=args.namespace,
        conversations=args.conversations,
        turns=args.turns,
        as_json=args.json,
    )


# -- bench ----------------------------------------------------------------------------------------
def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def run_bench_command(args: argparse.Namespace) -> int:
    """Delegate to ``benchmarks/harness.py`` (a source checkout only)."""
    root = _repo_root()
    harness = root / "benchmarks" / "harness.py"
    if not harness.is_file():
        print(
            f"durable-redis: the benchmark harness is not available ({harness} is missing); "
            "it ships with a source checkout: run `./run.sh bench` from the repository root",
            file=sys.stderr,
        )
        return 1
    cmd = [sys.executable, str(harness)]
    if args.quick:
        cmd.append("--quick")
    rest = list(args.rest)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    cmd += rest
    env = dict(os.environ)
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    return subprocess.call(cmd, cwd=str(root), env=env)
