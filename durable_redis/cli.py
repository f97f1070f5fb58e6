"""``durable-redis``: a thin command line over the client and the runtime.

Every command takes ``--redis-url`` (or ``REDIS_URL``), ``--namespace`` (or
``DURABLE_REDIS_NAMESPACE``) and ``--connect-timeout``; ``--json`` prints machine-readable
output (the worker: JSON log lines), errors included. ``demo`` needs no URL: it starts a private
Redis server of its own; ``server`` runs one for the other commands. The exit codes are in every
``--help`` (``_cli_support.EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from durable_redis._cli_commands import (
    UsageError,
    plain,
    run_bench_command,
    run_client_command,
    run_demo_command,
    run_server_command,
    run_worker_command,
)
from durable_redis._cli_functions import (
    FUNCTIONS_COMMANDS,
    add_functions_command,
    run_functions_command,
)
from durable_redis._cli_jobs import (
    JOB_COMMANDS,
    add_job_commands,
    run_job_command,
)
from durable_redis._cli_messaging import add_messaging_commands
from durable_redis._cli_ops import (
    OPS_COMMANDS,
    add_metrics_options,
    add_ops_commands,
    run_dashboard_command,
    run_ops_command,
)
from durable_redis._cli_replay import REPLAY_COMMANDS, add_replay_commands, run_replay_command
from durable_redis._cli_support import (
    EXIT_CODES,
    EXIT_ENDED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    IF_EXISTS,
    add_limit_options,
    parse_duration,
)
from durable_redis._version import __version__
from durable_redis.errors import DurableRedisError, InstanceTerminalError
from durable_redis.runtime.logs import FORMAT_ENV, LOG_FORMATS, configure_logging
from durable_redis.storage.base import InstanceStatus

__all__ = ["main"]

_NO_URL = (
    "no Redis URL given: pass --redis-url redis://HOST:PORT/DB (or rediss://, unix:///path) "
    "or set REDIS_URL (`durable-redis server` runs a local one and prints it). "
    "`durable-redis demo` needs none: it starts a private Redis."
)
DEFAULT_CONNECT_TIMEOUT_S = 2.0


class _ArgumentError(UsageError):
    """A command line argparse refused; ``usage`` is the command's usage text."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    """Raises UsageError instead of exiting, so ``--json`` can report it as JSON too."""

    def error(self, message: str) -> Any:
        raise _ArgumentError(f"{message} (see `{self.prog} --help`)", self.format_usage())


def _seconds(what: str) -> Any:
    return lambda text: parse_duration(text, what)


def _duration(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """An option taking seconds or a duration (``30``, ``30s``, ``10m``, ``2h``, ``7d``)."""
    parser.add_argument(flag, type=_seconds(flag), default=None, metavar="DURATION", help=help)


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options every command takes, accepted before and after the command name.

    The subcommand copies use SUPPRESS defaults so they never overwrite a value given before the
    command name (``durable-redis --json status ID`` and ``durable-redis status ID --json``).
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--redis-url",
        default=default(os.environ.get("REDIS_URL")),
        help="Redis URL: redis://HOST:PORT/DB, rediss://..., unix:///path (default: $REDIS_URL)",
    )
    parser.add_argument(
        "--namespace",
        default=default(os.environ.get("DURABLE_REDIS_NAMESPACE", "default")),
        help="namespace of the keys (default: $DURABLE_REDIS_NAMESPACE or 'default')",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output, errors included (the worker: JSON log lines)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_seconds("--connect-timeout"),
        default=default(DEFAULT_CONNECT_TIMEOUT_S),
        metavar="SECONDS",
        help="how long to retry an unreachable Redis before giving up "
        f"(default: {DEFAULT_CONNECT_TIMEOUT_S:g}s)",
    )
    parser.add_argument(
        "--durability",
        choices=("async", "replicated", "replicated_aof"),
        default=default(None),
        help="replicated: every acknowledged write waits for a replica (WAIT; replicated_aof: "
        "WAITAOF) and fails with ReplicationTimeoutError if none answers in time "
        "(docs/reliability.md; also ?durability= in the URL)",
    )
    parser.add_argument(
        "--scripts",
        choices=("auto", "functions", "eval"),
        default=default(None),
        help="FCALL of the function library or EVALSHA (default auto; docs/security.md)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="more logging")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default(os.environ.get(FORMAT_ENV, "text")),
        help="log lines as text or one JSON object each (default: $DURABLE_REDIS_LOG_FORMAT)",
    )


_JSON_ARG = "JSON; @PATH reads it from a file, - from stdin"


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    _add_common(common, suppress=True)

    parser = _Parser(
        prog="durable-redis",
        description="Durable execution on Redis.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"durable-redis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        """A subcommand: the common options, its one-line help, the exit codes as epilog."""
        return sub.add_parser(
            name,
            parents=[common],
            help=help,
            description=help[:1].upper() + help[1:] + ".",
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = command("worker", "run worker processes for an app")
    p.add_argument("app", help="MODULE:APP, e.g. myproject.workflows:app")
    p.add_argument("--concurrency", type=int, default=16, help="activities at once per process")
    p.add_argument("--processes", type=int, default=1, help="worker processes to start")
    p.add_argument("--max-sessions", type=int, default=None, help="sessions per worker")
    p.add_argument(
        "--queues",
        default=None,
        help="queues to serve (jobs and activities), comma-separated (default: default)",
    )
    p.add_argument(
        "--orchestration-concurrency", type=int, default=None, help="turns at once per process"
    )
    for flag, help in (
        (
            "--lock-timeout",
            "lease of a turn or an activity: a dead worker's returns after it (30s)",
        ),
        ("--session-lock-timeout", "lease of a session (default 60s)"),
        ("--session-idle-timeout", "release a session idle this long (default: never)"),
        ("--shutdown-grace", "how long SIGTERM waits for running activities (default 10s)"),
        ("--retention", "keep ended instances this long, then the janitor deletes them (7d)"),
    ):
        _duration(p, flag, help)
    p.add_argument(
        "--max-attempts", type=int, default=None, help="crashed turns before an instance fails"
    )
    p.add_argument(
        "--turn-timeout",
        default=None,
        metavar="DURATION|off",
        help="interrupt and hold a turn running longer (spinning code; default 2s; off: never)",
    )
    p.add_argument(
        "--max-turn-crashes",
        type=int,
        default=None,
        help="hold an instance whose turn killed its worker this many times (default 3; 0: off)",
    )
    p.add_argument(
        "--janitor-interval",
        default=None,
        metavar="DURATION|off",
        help="how often the janitor runs (default 5m; off: never)",
    )
    add_metrics_options(p)  # --metrics-port, --metrics-host (_cli_ops)

    p = command("start", "start an orchestration")
    p.add_argument("name", help="orchestration name")
    p.add_argument("--input", default=None, help=f"input as {_JSON_ARG}")
    p.add_argument("--id", dest="instance_id", default=None, help="instance id")
    p.add_argument("--version", default=None, help="orchestration version (default: the latest)")
    p.add_argument(
        "--if-exists",
        choices=sorted(IF_EXISTS),
        default="fail",
        help="when --id is taken: fail (default), ignore (keep it), replace-if-ended",
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument("--start-at", default=None, metavar="TIME", help="ISO 8601 time to start")
    when.add_argument(
        "--delay", default=None, metavar="DURATION", help="start after this long (30s, 10m, 2h)"
    )
    _duration(p, "--wait", "wait this long for the result (exit 1 if it fails, 3 on timeout)")
    add_limit_options(p, rates=False)  # --key with --concurrency 1, --debounce or --throttle

    p = command("status", "show an instance (its error's traceback too)")
    p.add_argument("instance_id")

    p = command("describe", "show an instance and what it waits on (activities, timers, ...)")
    p.add_argument("instance_id")

    p = command("wait", "wait until an instance ends and show it")
    p.add_argument("instance_id")
    _duration(p, "--timeout", "give up after this long (exit 3); default: wait forever")

    p = command("list", "list instances (newest first)")
    p.add_argument("--status", default=None, choices=[s.value for s in InstanceStatus] + ["held"])
    p.add_argument(
        "--held", action="store_true", help="only instances held by a nondeterministic deploy"
    )
    p.add_argument("--name", default=None)
    p.add_argument(
        "--since", default=None, metavar="TIME", help="created since: ISO 8601 time, or 10m, 2h"
    )
    p.add_argument("--oldest-first", action="store_true", help="oldest first instead")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor", default=None)

    p = command("history", "show an instance's history")
    p.add_argument("instance_id")
    p.add_argument("--execution", type=int, default=None)

    p = command("cancel", "cancel an instance (exit 4 if it has ended)")
    p.add_argument("instance_id")
    p.add_argument("--reason", default="cancelled from the command line")

    p = command("raise-event", "send an event to an instance (exit 4 if it has ended)")
    p.add_argument("instance_id")
    p.add_argument("event")
    p.add_argument("--data", default=None, help=f"event data as {_JSON_ARG}")

    add_messaging_commands(command, _JSON_ARG, _duration)

    p = command("held", "instances held by a nondeterministic deploy: list, fail or purge one")
    p.add_argument("action", nargs="?", default="list", choices=["list", "fail", "purge"])
    p.add_argument("instance_id", nargs="?", default=None)
    p.add_argument("--name", default=None, help="list: only this orchestration")
    p.add_argument("--limit", type=int, default=100)

    p = command("purge", "delete an instance and its children")
    p.add_argument("instance_id")
    p.add_argument("--force", action="store_true", help="even if it is still running")

    add_job_commands(command)
    add_replay_commands(command)

    p = command("demo", "run the demo on a private Redis")
    p.add_argument("--conversations", type=int, default=4)
    p.add_argument("--turns", type=int, default=5)

    p = command("server", "run a local development Redis (AOF on) in a folder")
    p.add_argument(
        "--dir", default=".durable-redis", help="data folder (default: ./.durable-redis)"
    )
    p.add_argument("--port", type=int, default=6379, help="port on 127.0.0.1 (0: a free one)")

    p = command("bench", "run the benchmark harness")
    p.add_argument("--quick", action="store_true", help="a short run (under 3 minutes)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options for benchmarks/harness")
    add_ops_commands(command)  # workers, doctor, dashboard (_cli_ops)
    add_functions_command(command)  # functions load|status (_cli_functions)
    return parser


def _require_url(args: argparse.Namespace) -> str:
    """The URL, with ``--durability`` / ``--scripts`` as its query parameters (so the worker
    processes it starts get them too)."""
    if not args.redis_url:
        raise UsageError(_NO_URL)
    url = str(args.redis_url)
    for flag in ("durability", "scripts"):
        value = getattr(args, flag, None)
        if value is not None:
            url = f"{url}{'&' if '?' in url else '?'}{flag}={value}"
    return url


def _emit(args: argparse.Namespace, data: Any, human: str) -> None:
    if args.json:
        print(json.dumps(plain(data), sort_keys=True, ensure_ascii=False))
    else:
        print(human)


def _error(args: argparse.Namespace | None, exc: BaseException, text: str) -> None:
    """Report an error: one JSON document on stdout under --json, else a line on stderr."""
    if args is not None and args.json:
        kind = "UsageError" if isinstance(exc, UsageError) else type(exc).__name__
        error = {"type": kind, "message": str(exc)}
        print(json.dumps({"error": error}, sort_keys=True, ensure_ascii=False), flush=True)
    else:
        print(f"durable-redis: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except UsageError as exc:
        as_json = "--json" in argv
        if isinstance(exc, _ArgumentError) and not as_json:
            print(exc.usage, end="", file=sys.stderr)
        _error(argparse.Namespace(json=as_json), exc, str(exc))
        return EXIT_USAGE
    base = logging.INFO if args.command == "worker" else logging.WARNING
    level = max(logging.DEBUG, base - 10 * args.verbose)
    log_format = "json" if args.json and args.command == "worker" else args.log_format
    configure_logging(level, log_format)
    if args.command == "worker":
        os.environ[FORMAT_ENV] = log_format  # its worker processes inherit it
    try:
        if args.command == "worker":
            return run_worker_command(args, _require_url(args))
        if args.command == "demo":
            return run_demo_command(args)
        if args.command == "bench":
            return run_bench_command(args)
        if args.command == "server":
            return run_server_command(args)
        if args.command in REPLAY_COMMANDS:
            return anyio.run(run_replay_command, args, args.redis_url or None, _emit)
        url = _require_url(args)
        if args.command == "dashboard":
            return run_dashboard_command(args, url)
        if args.command in OPS_COMMANDS:
            return anyio.run(run_ops_command, args, url, _emit)
        if args.command in FUNCTIONS_COMMANDS:
            return anyio.run(run_functions_command, args, url, _emit)
        if args.command in JOB_COMMANDS:
            return anyio.run(run_job_command, args, url, _emit)
        return anyio.run(run_client_command, args, url, _emit)
    except UsageError as exc:
        _error(args, exc, str(exc))
        return EXIT_USAGE
    except InstanceTerminalError as exc:
        _error(args, exc, f"{type(exc).__name__}: {exc}")
        return EXIT_ENDED
    except DurableRedisError as exc:
        _error(args, exc, f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
