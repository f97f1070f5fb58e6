"""The JSON sidecar of a golden history: ``x.history`` (msgpack, what replay reads) beside
``x.history.json`` (one pretty-printed object per event, what a reviewer reads in a diff).

:func:`write_golden` writes both, so re-recording (``DURABLE_REDIS_RECORD_GOLDEN=1``) keeps them
together; ``test_core_golden.py`` checks that every sidecar is the rendering of its binary.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from durable_redis._render import event_dict
from durable_redis.core.events import HistoryEvent
from durable_redis.testing import save_history


def portable(history: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    """The history with failure tracebacks blanked: they name the checkout's absolute paths."""
    out = []
    for event in history:
        failure = getattr(event, "failure", None)
        if failure is not None:
            event = dataclasses.replace(event, failure=dataclasses.replace(failure, traceback=""))
        out.append(event)
    return out


def render_json(history: Sequence[HistoryEvent]) -> str:
    """Every event as ``durable-redis history --json`` shows it (payloads decoded, times in
    ISO 8601), tracebacks blanked, two-space indent, a final newline."""
    events = [event_dict(e) for e in portable(history)]
    return json.dumps(events, indent=2, ensure_ascii=False) + "\n"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def write_golden(path: Path, history: Sequence[HistoryEvent]) -> None:
    """Record ``history`` at ``path`` and its JSON sidecar beside it."""
    save_history(path, history)
    sidecar(path).write_text(render_json(history), encoding="utf-8")
