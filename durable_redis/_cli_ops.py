"""The operations commands of ``durable-redis``: ``workers``, ``doctor`` and ``dashboard``.

:mod:`durable_redis.cli` registers them with :func:`add_ops_commands` and dispatches to
:func:`run_ops_command`; everything else about them lives here.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from durable_redis._cli_support import Emit, UsageError
from durable_redis._render import plain

__all__ = [
    "OPS_COMMANDS",
    "add_metrics_options",
    "add_ops_commands",
    "metrics_arguments",
    "run_dashboard_command",
    "run_ops_command",
]

OPS_COMMANDS = ("workers", "doctor", "dashboard")


def add_ops_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register ``workers``, ``doctor`` and ``dashboard`` through cli.py's ``command(name, help)``
    (the common options and the exit codes in ``--help``)."""
    command("workers", "list the live worker processes")

    p = command("doctor", "check Redis and the workers; say what to fix")
    p.add_argument("--latency-samples", type=int, default=20, help="PINGs to time (default: 20)")

    p = command("dashboard", "serve the web dashboard")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    p.add_argument("--read-only", action="store_true", help="no actions (cancel, events, purge)")
    p.add_argument(
        "--auth-token",
        default=os.environ.get("DURABLE_REDIS_DASHBOARD_TOKEN"),
        help="require this token (default: $DURABLE_REDIS_DASHBOARD_TOKEN; open it once as "
        "http://HOST:PORT/?token=T, which sets a cookie)",
    )


def add_metrics_options(worker_parser: argparse.ArgumentParser) -> None:
    """``durable-redis worker --metrics-port N [--metrics-host H]``."""
    worker_parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics on this port (process i of --processes: port + i); "
        "needs the 'metrics' extra",
    )
    worker_parser.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of /metrics (default: 127.0.0.1)"
    )


def metrics_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The ``run_worker`` keyword arguments of the metrics options (checked here)."""
    port = getattr(args, "metrics_port", None)
    if port is None:
        return {}
    if not 0 < port < 65536:
        raise UsageError("--metrics-port must be a TCP port (1-65535)")
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError(
            "--metrics-port needs the metrics extra: pip install 'durable-redis[metrics]'"
        ) from None
    return {"metrics_port": port, "metrics_host": args.metrics_host}


async def run_ops_command(args: argparse.Namespace, url: str, emit: Emit) -> int:
    from durable_redis.storage import RedisStore

    store = RedisStore.from_url(url, namespace=args.namespace)
    try:
        if args.command == "workers":
            return await _workers(store, args, emit)
        if args.command == "doctor":
            from durable_redis.storage.doctor import render_text, run_checks

            report = await run_checks(store, latency_samples=args.latency_samples)
            data = {"namespace": report.namespace, "ok": report.ok, "checks": report.checks}
            emit(args, data, render_text(report))
            return 0 if report.ok else 1
    finally:
        await store.close()
    raise UsageError(f"unknown command {args.command!r}")  # pragma: no cover


def run_dashboard_command(args: argparse.Namespace, url: str) -> int:
    try:
        import uvicorn

        from durable_redis.dashboard import create_app
    except ImportError as exc:
        raise UsageError(
            f"the dashboard needs its extra: pip install 'durable-redis[dashboard]' ({exc})"
        ) from None
    if not _is_loopback(args.host) and not args.auth_token:
        print(
            f"durable-redis: WARNING: the dashboard listens on {args.host} without "
            "--auth-token: anyone who can reach it can read payloads"
            + ("" if args.read_only else " and cancel or purge instances"),
            file=sys.stderr,
        )
    app = create_app(
        url, namespace=args.namespace, read_only=args.read_only, auth_token=args.auth_token
    )
    print(
        f"durable-redis: dashboard on http://{args.host}:{args.port}/ "
        f"(namespace {args.namespace!r}{', read-only' if args.read_only else ''})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ago(ms: int, now_ms: int) -> str:
    return f"{max(0, now_ms - ms) / 1000:.1f}s ago"


async def _workers(store: Any, args: argparse.Namespace, emit: Emit) -> int:
    from durable_redis.storage.workers import WorkerRegistry

    workers = await WorkerRegistry(store).list()
    now = await store.server_time_ms()
    lines = [
        f"{'WORKER':<40} {'PID':>7} {'VERSION':<8} {'TURNS':>5} {'ACTS':>5} {'SESS':>5} "
        "STARTED                   HEARTBEAT"
    ]
    for w in workers:
        started = datetime.fromtimestamp(w.started_at_ms / 1000, tz=UTC)
        lines.append(
            f"{w.worker_id:<40} {w.pid:>7} {w.version:<8} {w.turns_in_flight:>5} "
            f"{w.activities_in_flight:>5} {w.sessions_owned:>5} "
            f"{plain(started):<25} {_ago(w.last_heartbeat_ms, now)}"
        )
    if not workers:
        lines = [f"(no live workers in namespace {args.namespace!r})"]
    emit(args, {"workers": workers, "server_time_ms": now}, "\n".join(lines))
    return 0
