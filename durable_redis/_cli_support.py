"""Helpers of the ``durable-redis`` commands: exit codes, durations and times, payload arguments,
and ``describe``'s reading of a history (what an instance is waiting on)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from durable_redis.core.jobs import Limit
from durable_redis.errors import InstanceNotFoundError
from durable_redis.storage.base import ExistingInstancePolicy

__all__ = [
    "EXIT_CODES",
    "EXIT_ENDED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "IF_EXISTS",
    "Emit",
    "UsageError",
    "describe_history",
    "describe_text",
    "existing_instance",
    "parse_duration",
    "parse_future_time",
    "parse_time",
    "read_json_arg",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_ENDED = 4
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK:<4} success
  {EXIT_ERROR:<4} an error: Redis unreachable, no such instance, a refused operation; with
       --wait or `wait`: the instance failed or was cancelled
  {EXIT_USAGE:<4} a usage error: bad arguments, invalid JSON, no Redis URL
  {EXIT_TIMEOUT:<4} timed out waiting (start --wait, wait --timeout): it may still finish
  {EXIT_ENDED:<4} the instance has already ended (cancel, raise-event): nothing was sent
  {EXIT_INTERRUPTED:<4} interrupted (Ctrl-C)
With --json, an error is one JSON document on stdout:
  {{"error": {{"type": "InstanceNotFoundError", "message": "..."}}}}"""


#: ``start --if-exists`` choices.
IF_EXISTS = {
    "fail": ExistingInstancePolicy.FAIL,
    "ignore": ExistingInstancePolicy.IGNORE,
    "replace-if-ended": ExistingInstancePolicy.TERMINATE_IF_DONE,
}


class UsageError(Exception):
    """A command-line mistake: printed without a traceback, exit code 2."""


# -- durations and times --------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str, what: str) -> float:
    """Seconds in ``"90"``, ``"1.5s"``, ``"500ms"``, ``"10m"``, ``"2h"`` or ``"7d"``."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"{what} {text!r} is not a duration (e.g. 30, 30s, 500ms, 10m, 2h, 7d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_time(text: str, what: str, *, now: datetime) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none means UTC) or a duration before ``now``."""
    if _DURATION.match(text):
        return now - timedelta(seconds=parse_duration(text, what))
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{what} {text!r} is neither an ISO 8601 time (2026-01-31T12:00:00Z) nor a "
            "duration (10m, 2h, 7d)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_future_time(text: str, what: str, *, now: datetime) -> datetime:
    """An ISO 8601 time, or a duration after ``now``."""
    if _DURATION.match(text):
        return now + timedelta(seconds=parse_duration(text, what))
    return parse_time(text, what, now=now)


# -- payload arguments ----------------------------------------------------------------------------
def read_json_arg(text: str | None, what: str, stdin: IO[str] | None = None) -> Any:
    """The JSON in ``text``; ``-`` reads it from stdin, ``@PATH`` from a file."""
    if text is None:
        return None
    source = text
    if text == "-":
        source = (stdin or sys.stdin).read()
        what = f"{what} (from stdin)"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{what}: cannot read {str(path)!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"{what}: {str(path)!r} is not UTF-8 text: {exc}") from None
        what = f"{what} (from {path})"
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


# -- describe -------------------------------------------------------------------------------------
def _ms_iso(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe_history(events: list[Any]) -> dict[str, Any]:
    """What the current execution is waiting on, read from its history events.

    ``activities``: scheduled and not yet completed or failed (``cancel_requested`` when the code
    abandoned one); ``timers``: created and not fired; ``waits``: ``wait_for_event`` calls no
    event has answered yet, and ``buffered_events``: events raised that no wait took yet;
    ``children``: sub-orchestrations without a result; ``sessions``: open sessions. A wait or a
    timer the code abandoned (a ``when_any`` loser) records nothing, so it is still listed.
    """
    from durable_redis.core import events as ev

    activities: dict[int, dict[str, Any]] = {}
    timers: dict[int, dict[str, Any]] = {}
    children: dict[int, dict[str, Any]] = {}
    sessions: dict[str, dict[str, Any]] = {}
    subscribed: Counter[str] = Counter()
    raised: Counter[str] = Counter()
    for event in events:
        at = _ms_iso(event.timestamp_ms)
        match event:
            case ev.OrchestrationStarted():
                for sid in event.sessions:
                    sessions[sid] = {"session_id": sid, "opened_at": at}
            case ev.ActivityScheduled():
                activities[event.event_id] = {
                    "activity_id": event.event_id,
                    "name": event.name,
                    "attempt": event.attempt,
                    "session_id": event.session_id,
                    "scheduled_at": at,
                    "cancel_requested": False,
                }
            case ev.ActivityCompleted() | ev.ActivityFailed():
                activities.pop(event.activity_id, None)
            case ev.ActivityCancelRequested():
                if event.activity_id in activities:
                    activities[event.activity_id]["cancel_requested"] = True
            case ev.TimerCreated():
                timers[event.event_id] = {
                    "timer_id": event.event_id,
                    "fire_at": _ms_iso(event.fire_at_ms),
                    "created_at": at,
                }
            case ev.TimerFired():
                timers.pop(event.timer_id, None)
            case ev.EventSubscribed():
                subscribed[event.name] += 1
            case ev.EventRaised():
                raised[event.name] += 1
            case ev.SubOrchestrationScheduled():
                children[event.event_id] = {
                    "instance_id": event.instance_id,
                    "name": event.name,
                    "scheduled_at": at,
                }
            case ev.SubOrchestrationCompleted() | ev.SubOrchestrationFailed():
                children.pop(event.scheduled_id, None)
            case ev.SessionOpened():
                sessions[event.session_id] = {"session_id": event.session_id, "opened_at": at}
            case ev.SessionClosed():
                sessions.pop(event.session_id, None)
            case _:
                pass
    waits = [
        {"event": name, "waiting": count - raised[name]}
        for name, count in sorted(subscribed.items())
        if count > raised[name]
    ]
    buffered = [
        {"event": name, "count": count - subscribed[name]}
        for name, count in sorted(raised.items())
        if count > subscribed[name]
    ]
    return {
        "activities": list(activities.values()),
        "timers": list(timers.values()),
        "waits": waits,
        "buffered_events": buffered,
        "children": list(children.values()),
        "sessions": list(sessions.values()),
    }


def _activity_text(a: dict[str, Any]) -> str:
    where = f", session {a['session_id']}" if a["session_id"] else ""
    cancel = ", cancel requested" if a["cancel_requested"] else ""
    return (
        f"#{a['activity_id']} {a['name']} (attempt {a['attempt']}{where}, "
        f"scheduled {a['scheduled_at']}{cancel})"
    )


def describe_text(state_text: str, pending: dict[str, Any], terminal: bool) -> str:
    """``describe``'s human form: the status block, then what it is waiting on."""
    lines = [state_text, ""]
    if terminal:
        lines.append("(the instance has ended: it waits on nothing)")
        return "\n".join(lines)
    sections: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("activities", _activity_text),
        ("timers", lambda t: f"#{t['timer_id']} fires at {t['fire_at']}"),
        ("waits", lambda w: f"event {w['event']!r}" + (f" x{w['waiting']}" * (w["waiting"] > 1))),
        ("buffered_events", lambda b: f"event {b['event']!r} x{b['count']} (not waited for yet)"),
        ("children", lambda c: f"{c['instance_id']} ({c['name']}, started {c['scheduled_at']})"),
        ("sessions", lambda s: f"{s['session_id']} (opened {s['opened_at']})"),
    ]
    for key, show in sections:
        rows = pending[key]
        label = key.replace("_", " ")
        if not rows:
            lines.append(f"{label + ':':<17} none")
            continue
        lines.append(f"{label + ':':<17} {show(rows[0])}")
        lines += [f"{'':<17} {show(row)}" for row in rows[1:]]
    return "\n".join(lines)


Emit = Callable[[argparse.Namespace, Any, str], None]
"""How a command prints its result: ``emit(args, data, text)`` (JSON with ``--json``)."""


async def existing_instance(client: Any, instance_id: str) -> Any:
    """The instance's state, or InstanceNotFoundError."""
    state = await client.get_status(instance_id)
    if state is None:
        raise InstanceNotFoundError(f"no instance {instance_id!r}")
    return state


def add_limit_options(p: argparse.ArgumentParser, *, rates: bool) -> None:
    """--key, --concurrency, --debounce, --throttle (and, with ``rates``, --rate, --per,
    --burst): a ``Limit`` (``limit_from_args``)."""
    g = p.add_argument_group("flow control by key (docs/routing.md)")
    g.add_argument("--key", default=None, help="flow key, or a template like 'tenant:{tenant}'")
    g.add_argument("--concurrency", type=int, default=None, help="at most N running per key")
    if rates:
        g.add_argument("--rate", type=int, default=None, metavar="N", help="at most N per --per")
        g.add_argument("--per", type=float, default=1.0, metavar="SECONDS", help="rate window")
        g.add_argument("--burst", type=int, default=1, help="jobs a rate lets through at once")
    g.add_argument("--debounce", type=float, default=None, metavar="SECONDS")
    g.add_argument("--throttle", type=float, default=None, metavar="SECONDS")


def limit_from_args(args: argparse.Namespace) -> Limit | None:
    """The ``Limit`` of the options ``add_limit_options`` added (None without --key)."""
    rate = getattr(args, "rate", None)
    if args.key is None:
        if any(x is not None for x in (args.concurrency, rate, args.debounce, args.throttle)):
            raise UsageError("--concurrency, --rate, --debounce and --throttle need --key")
        return None
    return Limit(
        key=args.key,
        concurrency=args.concurrency,
        rate=rate,
        per=getattr(args, "per", 1.0),
        burst=getattr(args, "burst", 1),
        debounce=args.debounce,
        throttle=args.throttle,
    )
