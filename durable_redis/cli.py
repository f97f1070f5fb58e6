"""``durable-redis``: a thin command line over the client and the runtime.

Every command takes ``--redis-url`` (or ``REDIS_URL``) and ``--namespace`` (or
``DURABLE_REDIS_NAMESPACE``); ``--json`` prints machine-readable output. ``demo`` needs no URL:
it starts a private Redis server of its own.
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
    run_worker_command,
)
from durable_redis._cli_jobs import JOB_COMMANDS, add_job_commands, run_job_command
from durable_redis.errors import DurableRedisError
from durable_redis.storage.base import InstanceStatus

__all__ = ["main"]

_NO_URL = (
    "no Redis URL given: pass --redis-url redis://HOST:PORT/DB (or rediss://, unix:///path) "
    "or set REDIS_URL. `durable-redis demo` needs none: it starts a private Redis."
)


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
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="more logging")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, suppress=True)

    parser = argparse.ArgumentParser(
        prog="durable-redis", description="Durable execution on Redis."
    )
    _add_common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", parents=[common], help="run worker processes for an app")
    p.add_argument("app", help="MODULE:APP, e.g. myproject.workflows:app")
    p.add_argument("--concurrency", type=int, default=16, help="activities at once per process")
    p.add_argument("--processes", type=int, default=1, help="worker processes to start")
    p.add_argument("--max-sessions", type=int, default=None, help="sessions per worker")

    p = sub.add_parser("start", parents=[common], help="start an orchestration")
    p.add_argument("name", help="orchestration name")
    p.add_argument("--input", default=None, help="input as JSON")
    p.add_argument("--id", dest="instance_id", default=None, help="instance id")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS", help="wait for result")

    p = sub.add_parser("status", parents=[common], help="show an instance")
    p.add_argument("instance_id")

    p = sub.add_parser("list", parents=[common], help="list instances")
    p.add_argument("--status", default=None, choices=[s.value for s in InstanceStatus])
    p.add_argument("--name", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor", default=None)

    p = sub.add_parser("history", parents=[common], help="show an instance's history")
    p.add_argument("instance_id")
    p.add_argument("--execution", type=int, default=None)

    p = sub.add_parser("cancel", parents=[common], help="cancel an instance")
    p.add_argument("instance_id")
    p.add_argument("--reason", default="cancelled from the command line")

    p = sub.add_parser("raise-event", parents=[common], help="send an event to an instance")
    p.add_argument("instance_id")
    p.add_argument("event")
    p.add_argument("--data", default=None, help="event data as JSON")

    p = sub.add_parser("purge", parents=[common], help="delete an instance and its children")
    p.add_argument("instance_id")
    p.add_argument("--force", action="store_true", help="even if it is still running")

    add_job_commands(sub, common)

    p = sub.add_parser("demo", parents=[common], help="run the demo on a private Redis")
    p.add_argument("--conversations", type=int, default=4)
    p.add_argument("--turns", type=int, default=5)

    p = sub.add_parser("bench", parents=[common], help="run the benchmark harness")
    p.add_argument("--quick", action="store_true", help="a short run (under 3 minutes)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options for benchmarks/harness")
    return parser


def _require_url(args: argparse.Namespace) -> str:
    if not args.redis_url:
        raise UsageError(_NO_URL)
    return str(args.redis_url)


def _emit(args: argparse.Namespace, data: Any, human: str) -> None:
    if args.json:
        print(json.dumps(plain(data), sort_keys=True, ensure_ascii=False))
    else:
        print(human)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    base = logging.INFO if args.command == "worker" else logging.WARNING
    level = max(logging.DEBUG, base - 10 * args.verbose)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "worker":
            return run_worker_command(args, _require_url(args))
        if args.command == "demo":
            return run_demo_command(args)
        if args.command == "bench":
            return run_bench_command(args)
        url = _require_url(args)
        if args.command in JOB_COMMANDS:
            return anyio.run(run_job_command, args, url, _emit)
        return anyio.run(run_client_command, args, url, _emit)
    except UsageError as exc:
        print(f"durable-redis: {exc}", file=sys.stderr)
        return 2
    except DurableRedisError as exc:
        print(f"durable-redis: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
