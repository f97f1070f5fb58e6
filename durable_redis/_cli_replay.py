"""The deploy commands of ``durable-redis``: ``replay``, ``export`` and ``reset``
(docs/deploying.md).

``replay MODULE:APP`` replays recorded histories against the code importable now: read from
Redis (``--name``, ``--status``, ``--since``/``--until`` ``--by`` created or updated time,
``--limit``) or from ``*.history`` files that ``export ID...
--dir D`` wrote; it reports each divergence (instance, event position, recorded vs now) and exits
1 on any, so a CI job can refuse a deploy that would hold in-flight instances. ``reset ID``
re-runs a failed, held, completed or cancelled instance from a point of its history.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from durable_redis._cli_support import EXIT_ERROR, EXIT_OK, Emit, UsageError, parse_time
from durable_redis.errors import ValidationError

__all__ = ["REPLAY_COMMANDS", "add_replay_commands", "run_replay_command"]

REPLAY_COMMANDS = ("replay", "export", "reset")


def add_replay_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("replay", "replay recorded histories against the current code (a deploy gate)")
    p.add_argument("app", help="MODULE:APP whose code to check, e.g. myproject.workflows:app")
    p.add_argument("--dir", default=None, help="replay the *.history files `export` wrote here")
    p.add_argument("--name", default=None, help="only this orchestration")
    p.add_argument("--status", default=None, help="only instances in this status")
    p.add_argument("--limit", type=int, default=1000, help="at most this many instances")
    p.add_argument(
        "--since", default=None, metavar="TIME", help="only from this time: ISO 8601, or 10m, 7d"
    )
    p.add_argument("--until", default=None, metavar="TIME", help="only up to this time")
    p.add_argument(
        "--by",
        choices=("created", "updated"),
        default="created",
        help="the time --since/--until filter on: the start (default) or the latest turn",
    )

    p = command("reset", "re-run a failed, held or ended instance from a point of its history")
    p.add_argument("instance_id", metavar="ID")
    point = p.add_mutually_exclusive_group()
    point.add_argument("--event", type=int, default=None, help="keep events 1..N, re-run the rest")
    point.add_argument(
        "--before-failure",
        dest="shortcut",
        action="store_const",
        const="before-failure",
        help="the latest point before the first failure (the default)",
    )
    point.add_argument(
        "--last-turn",
        dest="shortcut",
        action="store_const",
        const="last-turn",
        help="the latest point where nothing was in flight",
    )
    p.add_argument("--reason", default="", help="why (recorded in the ExecutionReset event)")
    p.add_argument("--by", default=None, help="who (default: user@host)")
    p.add_argument(
        "--no-reapply-events",
        dest="reapply_events",
        action="store_false",
        help="do not deliver again the events raised after the point",
    )

    p = command("export", "save instances' current histories as files (for `replay --dir`)")
    p.add_argument("instance_ids", nargs="+", metavar="ID")
    p.add_argument("--dir", required=True, help="directory to write ID.history files to")


async def _reset(args: argparse.Namespace, url: str | None, emit: Emit) -> int:
    from durable_redis.client import Client

    if url is None:
        raise UsageError("reset needs a Redis URL (--redis-url or DURABLE_REDIS_URL)")
    point: int | str = args.event if args.event is not None else args.shortcut or "before-failure"
    async with Client.from_url(url, namespace=args.namespace) as client:
        info = await client.reset(
            args.instance_id,
            point,
            reason=args.reason,
            by=args.by,
            reapply_events=args.reapply_events,
        )
    emit(
        args,
        {
            "instance_id": info.instance_id,
            "from_execution": info.from_execution,
            "from_event": info.from_event,
            "execution_id": info.execution_id,
            "reapplied_events": info.reapplied_events,
        },
        f"{info.instance_id}: execution {info.execution_id} runs from event {info.from_event} "
        f"of execution {info.from_execution} (see `history {info.instance_id} --execution "
        f"{info.from_execution}`)"
        + (f"; {info.reapplied_events} event(s) delivered again" if info.reapplied_events else ""),
    )
    return EXIT_OK


async def run_replay_command(args: argparse.Namespace, url: str | None, emit: Emit) -> int:
    if getattr(args, "limit", 1) < 1:
        raise UsageError("--limit must be at least 1")
    from durable_redis._replay_gate import history_path
    from durable_redis.client import Client
    from durable_redis.testing import save_history

    if args.command == "reset":
        return await _reset(args, url, emit)
    if args.command == "export":
        directory = Path(args.dir)
        directory.mkdir(parents=True, exist_ok=True)
        if url is None:
            raise UsageError("export needs a Redis URL (--redis-url or DURABLE_REDIS_URL)")
        written = []
        async with Client.from_url(url, namespace=args.namespace) as client:
            for instance_id in args.instance_ids:
                history = await client.get_history(instance_id)
                if not history:
                    raise UsageError(f"instance {instance_id!r} has no recorded history")
                path = history_path(directory, instance_id)
                save_history(path, history)
                written.append(str(path))
        emit(args, {"written": written}, "\n".join(f"wrote {p}" for p in written))
        return EXIT_OK

    from durable_redis._replay_gate import replay_gate
    from durable_redis.runtime.process import load_app

    now = datetime.now(UTC)
    since = parse_time(args.since, "--since", now=now) if args.since else None
    until = parse_time(args.until, "--until", now=now) if args.until else None
    app = load_app(args.app)
    try:
        if args.dir is not None:
            report = await replay_gate(
                app, directory=args.dir, since=since, until=until, by=args.by, limit=args.limit
            )
        else:
            if url is None:
                raise UsageError("replay needs --dir or a Redis URL (--redis-url)")
            async with Client.from_url(url, namespace=args.namespace) as client:
                report = await replay_gate(
                    app,
                    client=client,
                    name=args.name,
                    status=args.status,
                    since=since,
                    until=until,
                    by=args.by,
                    limit=args.limit,
                )
    except ValidationError as exc:
        raise UsageError(str(exc)) from None
    emit(args, report.as_dict(), str(report))
    return EXIT_OK if report.ok else EXIT_ERROR
