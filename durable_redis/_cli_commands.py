"""What the ``durable-redis`` commands do; :mod:`durable_redis.cli` only parses and dispatches.

The client commands print one human-readable block (or, with ``--json``, one JSON document) on
stdout; errors go to stderr (with ``--json``: a JSON document on stdout) with the exit codes of
:data:`durable_redis._cli_support.EXIT_CODES`. Before a client command or a worker talks to
Redis, :func:`check_reachable` gives an unreachable server ``--connect-timeout`` seconds, saying
what it retries. ``demo`` lives in :mod:`durable_redis._cli_demo` (its app in
:mod:`durable_redis.demo`); ``server`` runs a local development Redis
(:func:`run_server_command`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from durable_redis._cli_messaging import MESSAGING_COMMANDS, run_messaging_command
from durable_redis._cli_support import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    IF_EXISTS,
    Emit,
    UsageError,
    describe_history,
    describe_text,
    existing_instance,
    limit_from_args,
    parse_duration,
    parse_future_time,
    parse_time,
    read_json_arg,
)
from durable_redis._render import (
    event_dict,
    event_text,
    iso,
    plain,
    state_dict,
    state_text,
)
from durable_redis.errors import (
    InstanceRunningError,
    WaitTimeoutError,
)
from durable_redis.storage._url import redact_url

__all__ = [
    "Emit",
    "UsageError",
    "check_reachable",
    "plain",
    "redact_url",
    "run_bench_command",
    "run_client_command",
    "run_demo_command",
    "run_server_command",
    "run_worker_command",
]


# -- client commands ------------------------------------------------------------------------------
def notice(args: argparse.Namespace, text: str) -> None:
    """A line for the person at the terminal, on stderr; ``worker --json`` logs it instead, so
    that its stderr stays one JSON object per line."""
    if args.json and args.command == "worker":
        logging.getLogger("durable_redis.cli").warning(text)
    else:
        print(f"durable-redis: {text}", file=sys.stderr, flush=True)


async def check_reachable(args: argparse.Namespace, url: str) -> None:
    """Give an unreachable Redis ``--connect-timeout`` seconds, saying so on stderr: once, or
    at every attempt with ``-v``. StoreUnavailableError when it does not answer in time."""
    from durable_redis.storage.probe import wait_until_reachable

    said: list[bool] = []

    def on_retry(error: BaseException, left: float) -> None:
        if said and not args.verbose:
            return
        said.append(True)
        notice(
            args,
            f"Redis at {redact_url(url)} unreachable ({error}); retrying for {left:.1f}s more "
            f"(--connect-timeout {args.connect_timeout:g})",
        )

    await wait_until_reachable(url, timeout=args.connect_timeout, on_retry=on_retry)


async def run_client_command(args: argparse.Namespace, url: str, emit: Emit) -> int:
    """The client commands (start, status, describe, wait, list, history, cancel, raise-event,
    purge, and _cli_messaging's) against ``url``."""
    from durable_redis.client import Client

    values = _values(args)  # usage errors before any connection
    await check_reachable(args, url)
    async with Client.from_url(url, namespace=args.namespace) as client:
        command = args.command
        if command == "start":
            return await _start(client, args, emit, values)
        if command == "status":
            state = await existing_instance(client, args.instance_id)
            emit(args, state_dict(state), state_text(state))
            return EXIT_OK
        if command == "describe":
            return await _describe(client, args, emit)
        if command == "wait":
            return await _wait(client, args, emit)
        if command == "list":
            return await _list(client, args, emit, values)
        if command == "history":
            events = [
                event_dict(e) for e in await client.get_history(args.instance_id, args.execution)
            ]
            if not events:
                await existing_instance(client, args.instance_id)
            emit(args, events, "\n".join(event_text(e) for e in events) or "(no events)")
            return EXIT_OK
        if command == "cancel":
            await client.cancel(args.instance_id, args.reason)
            emit(
                args,
                {"instance_id": args.instance_id, "cancel_requested": True},
                f"cancellation requested for {args.instance_id}",
            )
            return EXIT_OK
        if command == "raise-event":
            data = values.get("data")
            await client.raise_event(args.instance_id, args.event, data)
            emit(
                args,
                {"instance_id": args.instance_id, "event": args.event, "data": data},
                f"event {args.event!r} sent to {args.instance_id}",
            )
            return EXIT_OK
        if command == "held":
            return await _held(client, args, emit)
        if command == "purge":
            try:
                deleted = await client.purge(args.instance_id, force=args.force)
            except InstanceRunningError as exc:
                raise InstanceRunningError(
                    str(exc).replace("pass force=True", "pass --force")
                ) from None
            emit(
                args,
                {"instance_id": args.instance_id, "deleted": deleted},
                f"purged {deleted} instance(s) ({args.instance_id} and its children)",
            )
            return EXIT_OK
        if command in MESSAGING_COMMANDS:
            return await run_messaging_command(client, args, emit, values)
    raise UsageError(f"unknown command {command!r}")  # pragma: no cover - argparse prevents it


def _values(args: argparse.Namespace) -> dict[str, Any]:
    """The command's JSON payloads, times and durations, parsed (UsageError if one is bad)."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {}
    if getattr(args, "limit", 1) < 1:
        raise UsageError("--limit must be at least 1")
    if getattr(args, "input", None) is not None:
        values["input"] = read_json_arg(args.input, "--input")
    if getattr(args, "data", None) is not None:
        values["data"] = read_json_arg(args.data, "--data")
    if getattr(args, "delay", None) is not None:
        values["start_at"] = now + timedelta(seconds=parse_duration(args.delay, "--delay"))
    if getattr(args, "start_at", None) is not None:
        values["start_at"] = parse_future_time(args.start_at, "--start-at", now=now)
    if getattr(args, "since", None) is not None:
        values["since"] = parse_time(args.since, "--since", now=now)
    return values


async def _start(client: Any, args: argparse.Namespace, emit: Emit, values: dict[str, Any]) -> int:
    data = values.get("input")
    start_at = values.get("start_at")
    instance_id = await client.start(
        args.name,
        data,
        instance_id=args.instance_id,
        version=args.version,
        if_exists=IF_EXISTS[args.if_exists],
        start_at=start_at,
        limit=limit_from_args(args),
    )
    if args.wait is None:
        when = f" (first turn at {iso(start_at)})" if start_at is not None else ""
        emit(
            args,
            {"instance_id": instance_id, "name": args.name},
            f"started {args.name} as {instance_id}{when}",
        )
        return EXIT_OK
    return await _wait_and_show(
        client, instance_id, args.wait, args, emit, f"started {args.name} as {instance_id}"
    )


async def _wait(client: Any, args: argparse.Namespace, emit: Emit) -> int:
    await existing_instance(client, args.instance_id)
    return await _wait_and_show(client, args.instance_id, args.timeout, args, emit, "")


async def _wait_and_show(
    client: Any,
    instance_id: str,
    timeout: float | None,
    args: argparse.Namespace,
    emit: Emit,
    head: str,
) -> int:
    """Wait for the instance to end; print its state. 0 completed, 1 failed/cancelled, 3 timeout."""
    try:
        state = await client.wait_for_state(instance_id, timeout=timeout)
    except WaitTimeoutError:
        state = await client.get_status(instance_id)
        result: dict[str, Any] = (
            state_dict(state) if state is not None else {"instance_id": instance_id}
        )
        result["timed_out"] = True
        still = f"still {result.get('status', 'unknown')} after {timeout:g}s"
        emit(args, result, f"{head}; {still}" if head else f"{instance_id} {still}")
        return EXIT_TIMEOUT
    emit(args, state_dict(state), f"{head}\n{state_text(state)}" if head else state_text(state))
    return EXIT_OK if str(plain(state.status)) == "completed" else EXIT_ERROR


async def _describe(client: Any, args: argparse.Namespace, emit: Emit) -> int:
    state = await existing_instance(client, args.instance_id)
    pending = describe_history(await client.get_history(args.instance_id))
    emit(
        args,
        {"instance": state_dict(state), **pending},
        describe_text(state_text(state), pending, state.is_terminal),
    )
    return EXIT_OK


async def _list(client: Any, args: argparse.Namespace, emit: Emit, values: dict[str, Any]) -> int:
    if args.held or args.status == "held":
        return _emit_states(args, emit, await client.list_held(name=args.name, limit=args.limit))
    since = values.get("since")
    page = await client.list_instances(
        status=args.status,
        name=args.name,
        created_after=since,
        limit=args.limit,
        cursor=args.cursor,
        newest_first=not args.oldest_first,
    )
    return _emit_states(args, emit, page.instances, page.next_cursor)


def _emit_states(
    args: argparse.Namespace, emit: Emit, states: Any, next_cursor: str | None = None
) -> int:
    rows = [state_dict(s) for s in states]
    lines = [f"{'INSTANCE':<36} {'NAME':<20} {'STATUS':<16} CREATED"]
    lines += [
        f"{r['instance_id']:<36} {r['name']:<20} "
        f"{r['status'] + (' (held)' if r['held'] is not None else ''):<16} {r['created_at']}"
        for r in rows
    ]
    if not rows:
        lines = ["(no instances)"]
    if next_cursor:
        lines.append(f"more: --cursor {next_cursor}")
    emit(args, {"instances": rows, "next_cursor": next_cursor}, "\n".join(lines))
    return EXIT_OK


async def _held(client: Any, args: argparse.Namespace, emit: Emit) -> int:
    """``held [list]``, ``held fail ID``, ``held purge ID`` (docs/deploying.md)."""
    if args.action == "list":
        held = await client.list_held(name=args.name, limit=args.limit)
        rows = [state_dict(s) for s in held]
        lines = [f"{r['instance_id']:<36} {r['name']:<20} {r['held']}" for r in rows]
        emit(args, {"instances": rows}, "\n".join(lines) or "(no held instances)")
        return EXIT_OK
    if args.instance_id is None:
        raise UsageError(f"held {args.action} needs an INSTANCE_ID")
    state = await existing_instance(client, args.instance_id)
    if state.held is None:
        raise UsageError(f"instance {args.instance_id!r} is not held (status {state.status})")
    if args.action == "fail":
        marked = await client.fail_held(args.instance_id)
        if not marked:
            raise UsageError(f"instance {args.instance_id!r} is no longer held")
        emit(
            args,
            {"instance_id": args.instance_id, "fail_requested": True},
            f"{args.instance_id} will be failed at its next retried turn",
        )
        return EXIT_OK
    deleted = await client.purge(args.instance_id, force=True)
    emit(
        args,
        {"instance_id": args.instance_id, "deleted": deleted},
        f"purged {deleted} instance(s) ({args.instance_id} and its children)",
    )
    return EXIT_OK


# -- worker ---------------------------------------------------------------------------------------
def _worker_options(args: argparse.Namespace) -> Any:
    from durable_redis.errors import ConfigurationError
    from durable_redis.runtime import WorkerOptions

    if args.processes < 1:
        raise UsageError("--processes must be at least 1")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    fields: dict[str, Any] = {"activity_concurrency": args.concurrency}
    for flag, field in (
        ("max_sessions", "max_sessions_per_worker"),
        ("orchestration_concurrency", "orchestration_concurrency"),
        ("lock_timeout", "lock_timeout"),
        ("session_lock_timeout", "session_lock_timeout"),
        ("session_idle_timeout", "session_idle_timeout"),
        ("max_attempts", "max_attempts"),
        ("max_turn_crashes", "max_turn_crashes"),
        ("shutdown_grace", "shutdown_grace_period"),
        ("retention", "retention"),
    ):
        if getattr(args, flag) is not None:
            fields[field] = getattr(args, flag)
    if getattr(args, "queues", None) is not None:
        fields["queues"] = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    if getattr(args, "turn_timeout", None) is not None:
        off = args.turn_timeout.strip().lower() in ("off", "never", "0")
        fields["turn_timeout"] = (
            None if off else parse_duration(args.turn_timeout, "--turn-timeout")
        )
    if args.janitor_interval is not None:
        off = args.janitor_interval.strip().lower() in ("off", "never", "0")
        fields["janitor_interval"] = (
            None if off else parse_duration(args.janitor_interval, "--janitor-interval")
        )
    try:
        return WorkerOptions(**fields)
    except ConfigurationError as exc:  # the option names are WorkerOptions'; say the flags
        raise UsageError(f"bad worker option: {exc}") from None


def run_worker_command(args: argparse.Namespace, url: str) -> int:
    """Run ``--processes`` worker processes for ``MODULE:APP`` until SIGTERM/SIGINT."""
    import anyio

    from durable_redis._cli_ops import metrics_arguments
    from durable_redis.runtime import load_app, run_worker

    options = _worker_options(args)  # flags first: a usage error needs no import
    load_app(args.app)  # a bad reference (not an App) is refused before anything starts
    anyio.run(check_reachable, args, url)
    notice(
        args,
        f"{args.processes} worker process(es) for {args.app} on {redact_url(url)} "
        f"(namespace {args.namespace!r}); Ctrl-C or SIGTERM stops them",
    )
    log_level = "DEBUG" if args.verbose >= 2 else "INFO"
    return run_worker(
        args.app,
        url,
        options,
        processes=args.processes,
        namespace=args.namespace,
        log_level=log_level,
        log_format="json" if args.json else args.log_format,
        **metrics_arguments(args),  # _cli_ops: --metrics-port / --metrics-host
    )


# -- demo -----------------------------------------------------------------------------------------
def run_demo_command(args: argparse.Namespace) -> int:
    from durable_redis._cli_demo import run_demo

    return run_demo(
        redis_url=args.redis_url,
        namespace=args.namespace,
        conversations=args.conversations,
        turns=args.turns,
        as_json=args.json,
    )


# -- server ---------------------------------------------------------------------------------------
def run_server_command(args: argparse.Namespace) -> int:
    """A development Redis on 127.0.0.1 with AOF in ``--dir`` until Ctrl-C or SIGTERM.

    One server per data folder (a lock file in it), so two can never write the same AOF. The
    ``export REDIS_URL=...`` line goes to stdout (``--json``: one JSON document), the rest to
    stderr. Stopping it stops the ``redis-server`` child by its pid (terminate, wait, kill).
    """
    import fcntl
    import signal
    import socket
    import threading

    from durable_redis.devtools.server import RedisServer, redis_server_version

    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 and 65535 (0: a free port)")
    directory = Path(args.dir).expanduser().resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = (directory / "durable-redis.lock").open("a")
    except OSError as exc:
        raise UsageError(f"cannot use {directory} as the data folder: {exc}") from exc
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise UsageError(
                f"{directory} is in use by another `durable-redis server`; stop it, or pass "
                "another --dir"
            ) from exc
        if args.port:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", args.port)) == 0:
                    raise UsageError(
                        f"port {args.port} on 127.0.0.1 is in use (another Redis?): pass "
                        "--port N, or --port 0 for a free one"
                    )
        stop = threading.Event()
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
        server = RedisServer(
            unix_socket=False,
            persistence=True,
            directory=str(directory),
            port=args.port,
            startup_timeout_s=120.0,  # a large AOF takes a while to load
        )
        try:
            server.start()
            url = server.url
            version = ".".join(map(str, redis_server_version(str(server.executable)) or ()))
            print(
                f"durable-redis: Redis {version} ({server.executable}), pid {server.pid}, on "
                f"127.0.0.1:{server.port}; data in {directory} (AOF, appendfsync everysec, "
                "noeviction); Ctrl-C or SIGTERM stops it",
                file=sys.stderr,
                flush=True,
            )
            if args.json:
                doc = {"redis_url": url, "pid": server.pid, "dir": str(directory)}
                print(json.dumps(doc, sort_keys=True), flush=True)
            else:
                print(f"export REDIS_URL={url}", flush=True)
            process = server.process
            assert process is not None
            while not stop.wait(0.2):
                # Ctrl-C reaches redis-server too (one process group): it may exit first
                if process.poll() is not None and not stop.wait(1.0):
                    print(
                        f"durable-redis: redis-server exited ({process.returncode}); see "
                        f"{directory / 'redis.log'}",
                        file=sys.stderr,
                    )
                    return 1
            print("durable-redis: stopping Redis", file=sys.stderr, flush=True)
            return 0
        finally:
            server.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


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
