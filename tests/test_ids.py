"""``durable_redis.ids``: one validator (one argument order, three rules in one table), and every
derived id built and read back there; no other module splits an id on ``":"``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from durable_redis import ids
from durable_redis.errors import InvalidIdError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("value", "rule", "ok"),
    [
        ("order-1", ids.NAME, True),
        ("a:b", ids.NAME, True),
        ("x" * 256, ids.NAME, True),
        ("x" * 257, ids.NAME, False),
        ("é" * 129, ids.NAME, False),  # 258 bytes of UTF-8
        ("a{b", ids.NAME, False),
        ("a}b", ids.NAME, False),
        ("a\rb", ids.NAME, False),
        ("a\nb", ids.NAME, False),
        ("a\0b", ids.NAME, False),
        ("", ids.NAME, False),
        ("\udcff", ids.NAME, False),
        (b"bytes", ids.NAME, False),
        (7, ids.NAME, False),
        ("a{b}\r", ids.STORED, True),  # the stored rule: only the separators are forbidden
        ("x" * 512, ids.STORED, True),
        ("x" * 513, ids.STORED, False),
        ("a\nb", ids.STORED, False),
        ("a\0b", ids.STORED, False),
        ("fine:{x}", ids.SESSION, True),
        ("x" * 257, ids.SESSION, False),
        ("a\nb", ids.SESSION, False),
    ],
)
def test_one_validator_three_rules(value: object, rule: ids.IdRule, ok: bool) -> None:
    assert ids.valid_id(value, rule=rule) is ok
    if ok:
        assert ids.validate_id(value, "thing id", rule=rule) == value
    else:
        with pytest.raises(InvalidIdError, match="thing id"):
            ids.validate_id(value, "thing id", rule=rule)


def test_the_client_and_the_engine_use_the_one_validator() -> None:
    from durable_redis import client
    from durable_redis.core import context

    assert client.validate_id is ids.validate_id
    assert ids.SESSION.max_bytes == context.MAX_SESSION_ID_LENGTH


def test_derived_ids_keep_the_stored_format() -> None:
    # the formats the golden histories and the Lua scripts were written with
    assert ids.activity_key(1, 5) == "1:5"
    assert ids.work_item_id("o:1", "1:5") == "o:1\n1:5"
    assert ids.session_key("o:1", "s") == "o:1\ns"
    assert ids.activity_attempt_id("o", 2, 5) == "o:2:5"
    assert ids.activity_completion_id("o", "2:5") == "o:2:5:done"
    assert ids.job_idempotency_key("j1") == "job:j1"
    assert ids.timer_message_id("o", 1, 3) == "o:1:3:timer"
    assert ids.child_start_id("o", 1, 3) == "o:1:3:start"
    assert ids.child_cancel_id("o", 1, 3) == "o:1:3:cancel"
    assert ids.event_to_instance_id("o", 1, 3) == "o:1:3:event"
    assert ids.continue_as_new_id("o", 1) == "o:1:continue"
    assert ids.carried_update_id("o", 1, "u") == "o:1:carry:u"
    assert ids.child_result_id("o:sub:3", 1, 3) == "o:sub:3:result:1:3"
    assert ids.default_child_id("o", 3) == "o:sub:3"
    assert ids.schedule_job_id("nightly", 60_000) == "sched:nightly:60000"
    assert ids.tick_instance_id("nightly", 60_000) == "nightly@60000"
    assert ids.schedule_now_job_id("nightly", "abc") == "sched:nightly:now:abc"
    assert ids.schedule_now_instance_id("nightly", "abc") == "nightly@now:abc"
    for kind in ("start", "event", "cancel", "update", "queue"):
        assert ids.client_message_id(kind, "t0") == f"{kind}:t0"
    assert ids.list_cursor(2, 10, "a:b") == "2:10:a:b"
    assert ids.list_cursor(None, 10, "a:b") == "m:10:a:b"


@pytest.mark.parametrize("instance_id", ["o", "a:b:c", "x" * 256])
def test_every_parser_reads_back_what_its_builder_wrote(instance_id: str) -> None:
    assert ids.parse_activity_key(ids.activity_key(3, 41)) == (3, 41)
    assert ids.parse_work_item_id(ids.work_item_id(instance_id, "3:41")) == (instance_id, "3:41")
    assert ids.parse_list_cursor(ids.list_cursor(4, -5, instance_id)) == (4, "-5", instance_id)
    assert ids.parse_list_cursor(ids.list_cursor(None, 7, instance_id)) == (None, "7", instance_id)
    assert ids.parse_flow_group(ids.flow_group("gpu", instance_id)) == ("gpu", instance_id)


@pytest.mark.parametrize("bad", ["", "1", "1:", ":1", "a:1", "1:b", "1:2:3"])
def test_parsers_refuse_what_no_builder_writes(bad: str) -> None:
    assert ids.parse_activity_key(bad) is None


@pytest.mark.parametrize("bad", ["", "x", "1:2", "x:1:a", "1:y:a", None, 3])
def test_a_bad_list_cursor_is_none(bad: object) -> None:
    assert ids.parse_list_cursor(bad) is None


def _colon_splits(path: Path) -> list[str]:
    """``x.split(":")``, ``.rsplit(":"...)``, ``.partition(":")``, ``.rpartition(":")`` calls."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("split", "rsplit", "partition", "rpartition")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == ":"
        ):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_module_but_ids_splits_on_a_colon() -> None:
    allowed = {
        "durable_redis/ids.py",  # the parsers
        "durable_redis/runtime/process.py",  # "module:app", not an id
        "durable_redis/devtools/cluster_server.py",  # Redis INFO "field:value" lines
        "durable_redis/pytest_plugin.py",  # "module:app", not an id
        "durable_redis/_replay_gate.py",  # a source location "path:line", not an id
    }
    found = [
        f"{path.parent.name}/{hit}"
        for path in sorted((ROOT / "durable_redis").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in allowed
        for hit in _colon_splits(path)
    ]
    assert found == []


def test_the_colon_check_sees_a_split(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('a = "1:2".split(":")\nb, _, c = key.rpartition(":")\nd = x.split("|")\n')
    assert _colon_splits(bad) == ["bad.py:1", "bad.py:2"]
