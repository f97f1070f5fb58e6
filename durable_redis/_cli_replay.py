"""The deploy gate commands of ``durable-redis``: ``replay`` and ``export`` (docs/deploying.md).

``replay MODULE:APP`` replays recorded histories against the code importable now: read from
Redis (``--name``, ``--status``, ``--limit``) or from ``*.history`` files that ``export ID...
--dir D`` wrote; it reports each divergence (instance, event position, recorded vs now) and exits
1 on any, so a CI job can refuse a deploy that would hold in-flight instances.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from durable_redis._cli_support import EXIT_ERROR, EXIT_OK, Emit, UsageError
from durable_redis.core import App

__all__ = ["REPLAY_COMMANDS", "add_replay_commands", "run_replay_command"]

REPLAY_COMMANDS = ("replay", "export")
_SUFFIX = ".history"


def add_replay_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("replay", "replay recorded histories against the current code (a deploy gate)")
    p.add_argument("app", help="MODULE:APP whose code to check, e.g. myproject.workflows:app")
    p.add_argument("--dir", default=None, help="replay the *.history files `export` wrote here")
    p.add_argument("--name", default=None, help="only this orchestration")
    p.add_argument("--status", default=None, help="only instances in this status")
    p.add_argument("--limit", type=int, default=1000, help="at most this many instances")

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


def _check(app: App, instance_id: str, history: Any) -> dict[str, Any] | None:
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


async def run_replay_command(args: argparse.Namespace, url: str | None, emit: Emit) -> int:
    if getattr(args, "limit", 1) < 1:
        raise UsageError("--limit must be at least 1")
    from durable_redis.client import Client
    from durable_redis.testing import save_history

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
