"""Log formats of the command line and the worker processes (the library installs no handler).

Both formats print the ids the library puts in a record's ``extra`` (``instance_id``,
``session_id``, ``worker_id``, ...), so a line says which instance, session and worker it is
about: ``... session claimed [instance=order-1 session=session-2 worker=host-123-ab]``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["ID_FIELDS", "JsonLinesFormatter", "TextFormatter", "configure_logging"]

#: ``extra`` fields shown on every line that has them, in this order, and their text labels.
ID_FIELDS = {
    "instance_id": "instance",
    "session_id": "session",
    "worker_id": "worker",
    "activity_key": "activity",
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PROCESS_TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


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
    """One JSON object per line: time, level, logger, message, pid, the ids, and the traceback."""

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
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(
    level: int | str, *, json_lines: bool = False, fmt: str = TEXT_FORMAT
) -> None:
    """Install one stderr handler on the root logger (what ``logging.basicConfig`` would do)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLinesFormatter() if json_lines else TextFormatter(fmt))
    root = logging.getLogger()
    if root.handlers:  # basicConfig semantics: configure once
        return
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
