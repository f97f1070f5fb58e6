"""The replay gate (docs/deploying.md): replay recorded histories against the code importable
now and report each divergence with the source line of the orchestration that diverged.

Shared by ``durable-redis replay`` (:mod:`durable_redis._cli_replay`) and pytest
(:func:`durable_redis.testing.replay_gate`). Histories come from Redis (through a client, with
filters by name, status and created or updated time) or from ``*.history`` files written by
``durable-redis export``. Only reads.
"""

from __future__ import annotations

import linecache
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from durable_redis._test_histories import load_history, replay_history
from durable_redis.errors import DurableRedisError, ValidationError

__all__ = [
    "HISTORY_SUFFIX",
    "Divergence",
    "ReplayGateReport",
    "check_history",
    "history_path",
    "replay_gate",
]

HISTORY_SUFFIX = ".history"
TIME_FIELDS = ("created", "updated")


@dataclass(frozen=True, slots=True)
class Divergence:
    """One history the code no longer replays: at event ``position`` the history has
    ``recorded`` and the code did ``now`` (at ``source``, ``path:line``, whose text is
    ``code``); or ``error`` (its orchestration or version is not registered, or the file is
    not a history)."""

    instance_id: str
    position: int | None = None
    recorded: str | None = None
    now: str | None = None
    source: str | None = None
    code: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"instance_id": self.instance_id, "position": None, "error": self.error}
        return {
            "instance_id": self.instance_id,
            "position": self.position,
            "recorded": self.recorded,
            "now": self.now,
            "source": self.source,
            "code": self.code,
        }

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.instance_id}: {self.error}"
        line = (
            f"{self.instance_id}: event {self.position}: recorded {self.recorded}, now {self.now}"
        )
        if self.source:
            line += f"\n    at {self.source}" + (f": {self.code}" if self.code else "")
        return line


@dataclass(frozen=True, slots=True)
class ReplayGateReport:
    """``replayed`` histories, of which ``divergences`` did not replay."""

    replayed: int
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences

    def as_dict(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "divergences": [d.as_dict() for d in self.divergences]}

    def __str__(self) -> str:
        summary = f"replayed {self.replayed} histories: {len(self.divergences)} diverged"
        return "\n".join([*map(str, self.divergences), summary])

    def check(self) -> None:
        """AssertionError listing every divergence (for pytest), unless all replayed."""
        if self.divergences:
            raise AssertionError(str(self))


def history_path(directory: Path, instance_id: str) -> Path:
    return directory / (quote(instance_id, safe="") + HISTORY_SUFFIX)


def check_history(app: Any, instance_id: str, history: Any) -> Divergence | None:
    """The divergence of one history (events, encoded events or a file) against ``app``."""
    try:
        result = replay_history(app, history)
    except (DurableRedisError, ValueError) as exc:  # not registered, not a history file
        return Divergence(instance_id, error=f"{type(exc).__name__}: {exc}")
    error = result.nondeterminism
    if error is not None:
        source = error.source
        code = None
        if source:
            path, _, line = source.rpartition(":")
            if line.isdigit():
                code = linecache.getline(path, int(line)).strip() or None
        return Divergence(instance_id, error.position, error.recorded, error.actual, source, code)
    if result.new_events:
        return Divergence(
            instance_id,
            result.events_replayed + 1,
            "the end of the recorded history",
            type(result.new_events[0]).__name__,
        )
    return None


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _within(ms: int, since: int | None, until: int | None) -> bool:
    return (since is None or ms >= since) and (until is None or ms <= until)


def _file_histories(
    directory: Path, limit: int, since: int | None, until: int | None, by: str
) -> list[tuple[str, Any]]:
    if not directory.is_dir():
        raise ValidationError(f"{str(directory)!r} is not a directory")
    found: list[tuple[str, Any]] = []
    for path in sorted(directory.glob("*" + HISTORY_SUFFIX)):
        if len(found) >= limit:
            break
        instance_id = unquote(path.name[: -len(HISTORY_SUFFIX)])
        if since is not None or until is not None:
            try:  # the first event's time is its start, the last one's its latest turn
                events = load_history(path)
            except (DurableRedisError, ValueError):
                found.append((instance_id, path))  # reported as not a history
                continue
            if not events:
                continue
            stamp = events[0] if by == "created" else events[-1]
            if not _within(stamp.timestamp_ms, since, until):
                continue
        found.append((instance_id, path))
    return found


async def _redis_histories(
    client: Any,
    name: str | None,
    status: str | None,
    limit: int,
    window: tuple[datetime | None, datetime | None],
    by: str,
) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    cursor: str | None = None
    since, until = _ms(window[0]), _ms(window[1])
    created: dict[str, datetime | None] = {}
    if by == "created":  # the store's created index does the filtering
        created = {"created_after": window[0], "created_before": window[1]}
    while len(found) < limit:
        page = await client.list_instances(
            status=status, name=name, limit=min(500, limit), cursor=cursor, **created
        )
        for state in page.instances:
            if len(found) >= limit:
                break
            stamp = state.created_at if by == "created" else state.updated_at
            if not _within(int(stamp.timestamp() * 1000), since, until):
                continue
            history = await client.get_history(state.instance_id)
            if history:
                found.append((state.instance_id, history))
        cursor = page.next_cursor
        if cursor is None:
            break
    return found


async def replay_gate(
    app: Any,
    *,
    client: Any = None,
    directory: str | Path | None = None,
    name: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str = "created",
    limit: int = 1000,
) -> ReplayGateReport:
    """Replay the current execution of every matching instance (``client``: read from its
    Redis; ``name``, ``status``) or every ``*.history`` file in ``directory`` against ``app``.
    ``since`` / ``until`` keep the histories ``by`` "created" (started) or "updated" (latest
    turn) in that window; at most ``limit``."""
    if limit < 1:
        raise ValidationError("limit must be at least 1")
    if by not in TIME_FIELDS:
        raise ValidationError(f"by must be one of {TIME_FIELDS}, not {by!r}")
    lo, hi = _ms(since), _ms(until)
    histories: Sequence[tuple[str, Any]]
    if directory is not None:
        histories = _file_histories(Path(directory), limit, lo, hi, by)
    elif client is not None:
        histories = await _redis_histories(client, name, status, limit, (since, until), by)
    else:
        raise ValidationError("replay_gate needs a client (Redis) or a directory of histories")
    divergences = [d for iid, h in histories if (d := check_history(app, iid, h)) is not None]
    return ReplayGateReport(len(histories), divergences)
