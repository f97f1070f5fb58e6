"""The deploy commands of ``durable-redis``: ``replay``, ``export`` and ``reset``
(docs/deploying.md).

``replay MODULE:APP`` replays recorded histories against the code importable now: read from
Redis (``--name``, ``--status``, ``--limit``) or from ``*.history`` files that ``export ID...
--dir D`` wrote; it reports each divergence (instance, event position, recorded vs now) and exits
1 on any, so a CI job can refuse a deploy that would hold in-flight instances. ``reset ID``
re-runs a failed, held, completed or cancelled instance from a point of its history.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from durable_redis._cli_commands import Emit
from durable_redis._cli_support import EXIT_ERROR, EXIT_OK, UsageError

__all__ = ["REPLAY_COMMANDS", "add_replay_commands", "run_replay_command"]

REPLAY_COMMANDS = ("replay", "export", "reset")
_SUFFIX = ".history"


def add_replay_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("replay", "replay recorded histories against the current code (a deploy gate)")
    p.add_argument("app", help="MODULE:APP whose code to check, e.g. myproject.workflows:app")
    p.add_argument("--dir", default=None, help="replay the *.history files `export` wrote here")
    p.add_argument("--name", default=None, help="only this orchestration")
    p.add_argument("--status", default=None, help="only instances in this status")
    p.add_argument("--limit", type=int, default=1000, help="at most this many instances")

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

    p = command("export", "save instances' current histories as files (for `replay --dir`)")
    p.add_argument("instance_ids", nargs="+", metavar="ID")
    p.add_argument("--dir", required=True, help="directory to write ID.history files to")


def history_path(directory: Path, instance_id: str) -> Path:
    return directory / (quote(instance_id, safe="") + _SUFFIX)


def _file_histories(directory: Path, limit: int) -> list[tuple[str, Any]]:
    if not directory.is_dir():
        raise UsageError(f"--dir {str(directory)!r} is not a directory")
    files = sorted(directory.glob("*" + _SUFFIX))[:limit]
    return [(unquote(f.name[: -len(_SUFFIX)]), f) for f in files]


async def _redis_histories(client: Any, args: argparse.Namespace) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    cursor: str | None = None
    while len(found) < args.limit:
        page = await client.list_instances(
            status=args.status, name=args.name, limit=min(500, args.limit), cursor=cursor
        )
        for state in page.instances:
            if len(found) >= args.limit:
                break
            history = await client.get_history(state.instance_id)
            if history:
                found.append((state.instance_id, history))
        cursor = page.next_cursor
        if cursor is None:
            break
    return found


def _check(app: Any, instance_id: str, history: Any) -> dict[str, Any] | None:
    """The divergence of one history against ``app`` (None: it replays)."""
    from durable_redis.errors import DurableRedisError
    from durable_redis.testing import replay_history

    try:
        result = replay_history(app, history)
    except (DurableRedisError, ValueError) as exc:  # not registered, not a history file
        error_text = f"{type(exc).__name__}: {exc}"
        return {"instance_id": instance_id, "position": None, "error": error_text}
    error = result.nondeterminism
    if error is not None:
        return {
            "instance_id": instance_id,
            "position": error.position,
            "recorded": error.recorded,
            "now": error.actual,
        }
    if result.new_events:
        return {
            "instance_id": instance_id,
            "position": result.events_replayed + 1,
            "recorded": "the end of the recorded history",
            "now": type(result.new_events[0]).__name__,
        }
    return None


def _line(d: dict[str, Any]) -> str:
    if "error" in d:
        return f"{d['instance_id']}: {d['error']}"
    return f"{d['instance_id']}: event {d['position']}: recorded {d['recorded']}, now {d['now']}"


async def _reset(args: argparse.Namespace, url: str | None, emit: Emit) -> int:
    from durable_redis.client import Client

    if url is None:
        raise UsageError("reset needs a Redis URL (--redis-url or DURABLE_REDIS_URL)")
    point: int | str = args.event if args.event is not None else args.shortcut or "before-failure"
    async with Client.from_url(url, namespace=args.namespace) as client:
        info = await client.reset(args.instance_id, point, reason=args.reason, by=args.by)
    emit(
        args,
        {
            "instance_id": info.instance_id,
            "from_execution": info.from_execution,
            "from_event": info.from_event,
            "execution_id": info.execution_id,
        },
        f"{info.instance_id}: execution {info.execution_id} runs from event {info.from_event} "
        f"of execution {info.from_execution} (see `history {info.instance_id} --execution "
        f"{info.from_execution}`)",
    )
    return EXIT_OK


async def run_replay_command(args: argparse.Namespace, url: str | None, emit: Emit) -> int:
    if getattr(args, "limit", 1) < 1:
        raise UsageError("--limit must be at least 1")
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

    from durable_redis.runtime.process import load_app

    app = load_app(args.app)
    if args.dir is not None:
        histories = _file_histories(Path(args.dir), args.limit)
    else:
        if url is None:
            raise UsageError("replay needs --dir or a Redis URL (--redis-url)")
        async with Client.from_url(url, namespace=args.namespace) as client:
            histories = await _redis_histories(client, args)
    divergences = [d for iid, h in histories if (d := _check(app, iid, h)) is not None]
    summary = f"replayed {len(histories)} histories: {len(divergences)} diverged"
    emit(
        args,
        {"replayed": len(histories), "divergences": divergences},
        "\n".join([*map(_line, divergences), summary]),
    )
    return EXIT_ERROR if divergences else EXIT_OK
