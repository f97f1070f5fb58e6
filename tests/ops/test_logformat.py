"""``--log-format json``: one JSON object per line, the ids of ``extra=`` as fields."""

from __future__ import annotations

import json
import logging

import pytest

from durable_redis.runtime.logs import JsonLinesFormatter, configure_logging


def test_json_lines_carry_the_ids_and_the_traceback() -> None:
    logger = logging.getLogger("durable_redis.test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "turn of %s failed", ("i-1",),
            exc_info=__import__("sys").exc_info(),
            extra={"instance_id": "i-1", "activity_key": "1:3", "worker_id": "w", "n": 2},
        )  # fmt: skip
    out = json.loads(JsonLinesFormatter().format(record))
    assert out["message"] == "turn of i-1 failed" and out["level"] == "ERROR"
    assert (out["instance_id"], out["activity_key"], out["worker_id"], out["n"]) == (
        "i-1",
        "1:3",
        "w",
        2,
    )
    assert "ValueError: boom" in out["traceback"] and out["time"].endswith("Z")
    assert "args" not in out and "msg" not in out


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("INFO", "xml")
