"""Log output of the command line and the worker processes: ``--log-format text|json``.

The library never installs handlers; only the CLI and ``python -m durable_redis.runtime`` call
:func:`configure_logging`. ``json`` writes one object per line with ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, ``pid``, the ids the code passes in ``extra=``
(``instance_id``, ``execution_id``, ``activity_key``, ``activity_name``, ``worker_id``, and any
other extra field), and ``exception`` (the traceback text) when there is one. Worker processes
started by ``durable-redis worker`` inherit the format through ``DURABLE_REDIS_LOG_FORMAT``.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

__all__ = ["FORMAT_ENV", "LOG_FORMATS", "JsonFormatter", "configure_logging"]

FORMAT_ENV = "DURABLE_REDIS_LOG_FORMAT"
LOG_FORMATS = ("text", "json")

# attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(
    level: int | str, log_format: str | None = None, *, pid: bool = False
) -> None:
    """Install one stderr handler on the root logger (``text`` or ``json``)."""
    chosen = log_format or os.environ.get(FORMAT_ENV) or "text"
    if chosen not in LOG_FORMATS:
        raise ValueError(f"unknown log format {chosen!r} (one of {', '.join(LOG_FORMATS)})")
    handler = logging.StreamHandler()
    if chosen == "json":
        handler.setFormatter(JsonFormatter())
    else:
        process = " %(process)d" if pid else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s{process} %(levelname)s %(name)s: %(message)s")
        )
    logging.basicConfig(level=level, handlers=[handler])  # a no-op if the root has handlers
