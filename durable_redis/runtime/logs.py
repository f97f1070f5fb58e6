"""Log formats of the command line and the worker processes: ``--log-format text|json``.

The library never installs handlers; only the CLI and ``python -m durable_redis.runtime`` call
:func:`configure_logging`. Both formats print the ids the library puts in a record's ``extra``
(``instance_id``, ``session_id``, ``worker_id``, ...), so a line says which instance, session and
worker it is about: ``... session claimed [instance=order-1 session=session-2 worker=host-1-ab]``.
``json`` writes one object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, ``pid``, every ``extra=`` field, and ``traceback`` when there is one. Worker
processes started by ``durable-redis worker`` inherit the format through
``DURABLE_REDIS_LOG_FORMAT``.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FORMAT_ENV",
    "ID_FIELDS",
    "LOG_FORMATS",
    "JsonLinesFormatter",
    "TextFormatter",
    "configure_logging",
]

FORMAT_ENV = "DURABLE_REDIS_LOG_FORMAT"
LOG_FORMATS = ("text", "json")

#: ``extra`` fields shown on every line that has them, in this order, and their text labels.
ID_FIELDS = {
    "instance_id": "instance",
    "session_id": "session",
    "worker_id": "worker",
    "activity_key": "activity",
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PROCESS_TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"

# attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _ids(record: logging.LogRecord) -> dict[str, str]:
    return {
        key: str(value)
        for key in ID_FIELDS
        if (value := getattr(record, key, None)) not in (None, "")
    }


class TextFormatter(logging.Formatter):
    """The plain format with ``[instance=... worker=...]`` appended when the record has ids."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = _ids(record)
        if not ids:
            return text
        tag = " ".join(f"{ID_FIELDS[k]}={v}" for k, v in ids.items())
        head, sep, rest = text.partition("\n")  # keep a traceback below the tagged line
        return f"{head} [{tag}]{sep}{rest}"


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, every ``extra=`` field
    (the ids first), and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
            **_ids(record),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(
    level: int | str, log_format: str | None = None, *, pid: bool = False
) -> None:
    """Install one stderr handler on the root logger (what ``logging.basicConfig`` would do).

    ``log_format`` is ``"text"`` or ``"json"`` (default: ``$DURABLE_REDIS_LOG_FORMAT``, else
    text); ``pid`` adds the process id to text lines (worker processes).
    """
    chosen = log_format or os.environ.get(FORMAT_ENV) or "text"
    if chosen not in LOG_FORMATS:
        raise ValueError(f"unknown log format {chosen!r} (one of {', '.join(LOG_FORMATS)})")
    handler = logging.StreamHandler()
    text = TextFormatter(PROCESS_TEXT_FORMAT if pid else TEXT_FORMAT)
    handler.setFormatter(JsonLinesFormatter() if chosen == "json" else text)
    root = logging.getLogger()
    if root.handlers:  # basicConfig semantics: configure once
        return
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
