"""Records as JSON-ready data and as text: what the CLI prints and the dashboard shows.

A history event, an instance state or any payload becomes plain JSON data (``plain``) or one
human-readable line or block; neither the CLI nor the dashboard imports the other for it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from datetime import UTC, datetime
from typing import Any

from durable_redis.errors import FailureDetails

__all__ = [
    "decode_payload",
    "event_dict",
    "event_text",
    "iso",
    "plain",
    "show",
    "state_dict",
    "state_text",
]


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data (dataclasses, enums, datetimes, bytes included)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def show(value: Any) -> str:
    """A payload on one line: JSON when possible."""
    if value is None:
        return "-"
    try:
        return json.dumps(plain(value), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def state_dict(state: Any) -> dict[str, Any]:
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
        "held": state.held,
        "held_since": plain(state.held_since),
    }


def state_text(state: Any) -> str:
    error: FailureDetails | None = state.error
    rows = [
        ("instance", state.instance_id),
        ("name", state.name + (f" (version {state.version})" if state.version else "")),
        ("status", str(plain(state.status))),
        ("execution", str(state.execution_id)),
        ("created", iso(state.created_at)),
        ("updated", iso(state.updated_at)),
        ("completed", iso(state.completed_at) if state.completed_at else "-"),
    ]
    if state.parent_instance_id:
        rows.append(("parent", state.parent_instance_id))
    rows += [
        ("input", show(state.input)),
        ("output", show(state.output)),
        ("error", f"[{error.kind}] {error}" if error is not None else "-"),
        ("custom", show(state.custom_status)),
    ]
    if state.held is not None:
        since = iso(state.held_since) if state.held_since else "-"
        rows.insert(3, ("held", f"since {since}: {state.held}"))
    text = "\n".join(f"{label:<10} {value}" for label, value in rows)
    if error is not None and error.traceback.strip():
        indented = "\n".join("  " + line for line in error.traceback.rstrip().splitlines())
        text += f"\ntraceback (of the {error.type_name}):\n{indented}"
    return text


def decode_payload(data: bytes) -> Any:
    from durable_redis.core import JsonCodec, MsgpackCodec

    for codec in (MsgpackCodec(), JsonCodec()):
        try:
            return codec.decode(data)
        except Exception:
            continue
    return f"<{len(data)} bytes>"


def event_dict(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "type": type(event).__name__,
        "timestamp": iso(datetime.fromtimestamp(event.timestamp_ms / 1000, tz=UTC)),
    }
    for field in dataclasses.fields(event):
        if field.name in ("event_id", "timestamp_ms"):
            continue
        value = getattr(event, field.name)
        if isinstance(value, bytes):
            value = decode_payload(value)
        if field.name == "fire_at_ms":  # a time (timeout_ms and the like are durations)
            out["fire_at"] = iso(datetime.fromtimestamp(value / 1000, tz=UTC))
            continue
        out[field.name] = plain(value)
    return out


def event_text(event: dict[str, Any]) -> str:
    details = []
    for key, value in event.items():
        if key in ("event_id", "type", "timestamp") or value is None or value == []:
            continue
        if key == "failure" and isinstance(value, dict):
            value = f"{value.get('type_name')}: {value.get('message')}"
        details.append(f"{key}={show(value)}")
    return f"{event['event_id']:>4}  {event['timestamp']}  {event['type']:<28} {' '.join(details)}"
