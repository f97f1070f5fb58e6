"""Lua scripts: finding, loading (EVALSHA with NOSCRIPT fallback) and status codes.

Scripts live in ``<repo>/lua`` (development, editable installs) or ``durable_redis/_lua`` (the
wheel force-includes ``lua`` there). A line ``-- @include <name>`` is replaced by
``lua/includes/<name>.lua``. Status codes map to exceptions here and only here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NoReturn

from durable_redis.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceRunningError,
    InstanceTerminalError,
    JobExistsError,
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    NamespaceMissingError,
    ScheduleNotFoundError,
    StoreError,
)
from durable_redis.storage.packing import COMMIT_TURN_ARGV, COMMIT_TURN_KEYS

__all__ = [
    "SCRIPTS",
    "ScriptSpec",
    "Status",
    "load_script_source",
    "lua_dir",
    "raise_for_status",
]


class Status:
    """Status codes: the first element of every script's reply."""

    OK = 0
    LEASE_LOST = 1
    NAMESPACE_MISSING = 2
    EXISTS = 3
    NOT_FOUND = 4
    EMPTY = 5
    RUNNING = 6
    RETRY = 7
    NOT_ELIGIBLE = 8
    ENDED = 9


@dataclass(frozen=True, slots=True)
class ScriptSpec:
    """Arity of a script as the Python wrapper calls it (checked against the Lua header)."""

    name: str
    keys: int  # fixed KEYS
    argv: int  # fixed ARGV
    variadic_keys: bool = False
    variadic_argv: bool = False


SCRIPTS: dict[str, ScriptSpec] = {
    s.name: s
    for s in (
        ScriptSpec("create_instance", keys=13, argv=13),
        ScriptSpec("enqueue_message", keys=9, argv=5),
        ScriptSpec("claim_orchestration", keys=6, argv=3, variadic_argv=True),
        ScriptSpec("lock_messages", keys=10, argv=5),
        ScriptSpec(
            "commit_turn",
            keys=len(COMMIT_TURN_KEYS),
            argv=len(COMMIT_TURN_ARGV),
            variadic_keys=True,
            variadic_argv=True,
        ),
        ScriptSpec("renew_orchestration", keys=3, argv=4),
        ScriptSpec("abandon_orchestration", keys=8, argv=7),
        ScriptSpec("fail_held", keys=2, argv=1),
        ScriptSpec("reset_instance", keys=25, argv=9, variadic_argv=True),
        ScriptSpec("fetch_work_items", keys=10, argv=10, variadic_argv=True),
        ScriptSpec("ack_work_item", keys=18, argv=10),
        ScriptSpec("renew_work_items", keys=4, argv=3, variadic_argv=True),
        ScriptSpec("abandon_work_item", keys=8, argv=5),
        ScriptSpec("renew_sessions", keys=2, argv=3, variadic_argv=True),
        ScriptSpec("release_sessions", keys=4, argv=3, variadic_argv=True),
        ScriptSpec("queue_status", keys=6, argv=3),
        ScriptSpec("delete_instance", keys=26, argv=6, variadic_keys=True),
        ScriptSpec("purge_work", keys=8, argv=3),
        ScriptSpec("outbox_apply", keys=8, argv=3, variadic_keys=True, variadic_argv=True),
        ScriptSpec("outbox_ack", keys=3, argv=1, variadic_argv=True),
        ScriptSpec("enqueue_jobs", keys=7, argv=10, variadic_argv=True),
        ScriptSpec("fetch_jobs", keys=8, argv=5, variadic_argv=True),
        ScriptSpec("ack_jobs", keys=7, argv=1, variadic_argv=True),
        ScriptSpec("renew_jobs", keys=3, argv=2, variadic_argv=True),
        ScriptSpec("cancel_job", keys=6, argv=3),
        ScriptSpec("retry_job", keys=5, argv=2),
        ScriptSpec("pause_job_queue", keys=2, argv=3),
        ScriptSpec("claim_schedule", keys=7, argv=10, variadic_argv=True),
        ScriptSpec("set_schedule", keys=3, argv=6),
        ScriptSpec(
            "claim_schedule_start", keys=10, argv=10, variadic_keys=True, variadic_argv=True
        ),
    )
}


JOB_SCRIPTS = frozenset(
    {
        "enqueue_jobs",
        "fetch_jobs",
        "ack_jobs",
        "renew_jobs",
        "cancel_job",
        "retry_job",
        "pause_job_queue",
    }
)
SCHEDULE_SCRIPTS = frozenset({"claim_schedule", "claim_schedule_start", "set_schedule"})


def lua_dir() -> Path:
    """The directory holding the scripts: ``durable_redis/_lua`` (wheel) or ``<repo>/lua``."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "_lua", here.parent.parent / "lua"):
        if (candidate / "commit_turn.lua").is_file():
            return candidate
    raise FileNotFoundError("durable_redis Lua scripts not found (expected durable_redis/_lua)")


_INCLUDE = re.compile(r"^-- @include (\w+)\s*$", re.MULTILINE)
_TEST_CLOCK = re.compile(r"^[ \t]*-- @test_clock\b.*$", re.MULTILINE)
# a top-level definition of an include: "local function name(" or "local a, b = ..."
_TOP_DEFINITION = re.compile(r"^local (?:function (\w+)|(\w+(?:\s*,\s*\w+)*)\s*=)", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z_]\w*")


def _defined_names(m: re.Match[str]) -> set[str]:
    """The names a ``_TOP_DEFINITION`` match defines."""
    return {m.group(1)} if m.group(1) else {n.strip() for n in m.group(2).split(",")}


def _definitions(text: str) -> tuple[str, list[tuple[set[str], str]]]:
    """An include split into its preamble and its top-level definitions, in order: (the names
    each defines, its text with the comment lines just above it)."""
    starts: list[tuple[int, set[str]]] = []
    for m in _TOP_DEFINITION.finditer(text):
        start = m.start()
        while True:  # take in the comment block right above the definition
            prev = text.rfind("\n", 0, max(start - 1, 0)) + 1
            if start == 0 or not text[prev:start].startswith("--"):
                break
            start = prev
        starts.append((start, _defined_names(m)))
    if not starts:
        return text, []
    chunks = []
    for i, (start, names) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        chunks.append((names, text[start:end]))
    return text[: starts[0][0]], chunks


def _inline_includes(text: str, includes: dict[str, str]) -> str:
    """``text`` with each ``-- @include <name>`` replaced by the definitions of that include
    the script uses, directly or through other kept definitions (in their order).

    Redis runs a script's whole body on every call, so every helper it includes is made again
    each time: the ~45 helpers of common.lua cost 5-6 µs of Redis CPU per call, whatever the
    script used of them; claim_orchestration's own cost 3.5 µs, lock_messages' 2.7 µs (an
    EVALSHA of the definitions alone: benchmarks/README.md "Lua helpers"). A name is taken as
    used when it appears as a word anywhere outside its definition (a comment included): that
    can only keep more than is needed, never less; and a definition can only see the ones above
    it, so the kept ones stay in order."""
    names = _INCLUDE.findall(text)
    parts = {name: _definitions(includes[name]) for name in names}
    defined: dict[str, tuple[str, int]] = {}
    for inc, (_pre, chunks) in parts.items():
        for i, (chunk_names, _body) in enumerate(chunks):
            for n in chunk_names:
                defined[n] = (inc, i)
    kept: set[tuple[str, int]] = set()
    todo = [w for w in set(_WORD.findall(_INCLUDE.sub("", text))) if w in defined]
    while todo:
        where = defined[todo.pop()]
        if where in kept:
            continue
        kept.add(where)
        body = parts[where[0]][1][where[1]][1]
        todo += [w for w in set(_WORD.findall(body)) if w in defined]

    def include(match: re.Match[str]) -> str:
        inc = match.group(1)
        pre, chunks = parts[inc]
        return pre + "".join(body for i, (_n, body) in enumerate(chunks) if (inc, i) in kept)

    return _INCLUDE.sub(include, text)


@cache
def load_script_source(name: str, *, test_clock: bool = False) -> str:
    """The text of ``<name>.lua`` with its includes inlined (the helpers it uses:
    ``_inline_includes``).

    ``test_clock=True`` (``durable_redis.testing`` only) also puts ``includes/test_clock.lua``
    at the ``-- @test_clock`` line of ``server_now()``: the virtual clock of a test namespace.
    Production scripts keep that line a comment, so they never read a clock offset.
    """
    base = lua_dir()
    text = (base / f"{name}.lua").read_text(encoding="utf-8")
    clock = ""
    if test_clock:
        clock = (base / "includes" / "test_clock.lua").read_text(encoding="utf-8").rstrip("\n")
    includes = {}
    for inc in set(_INCLUDE.findall(text)):
        source = (base / "includes" / f"{inc}.lua").read_text(encoding="utf-8")
        if test_clock:  # before the pruning: the clock's lines are part of server_now()
            source = _TEST_CLOCK.sub(lambda _m: clock, source)
        includes[inc] = source
    return _inline_includes(text, includes)


def raise_for_status(script: str, reply: Sequence[object], subject: str = "") -> NoReturn:
    """Raise the exception for a script's non-OK status (the one place codes map to errors)."""
    code = int(reply[0])  # type: ignore[call-overload]
    detail = ""
    if len(reply) > 1 and isinstance(reply[1], bytes | str):
        detail = reply[1].decode() if isinstance(reply[1], bytes) else reply[1]
    where = f"{script}({subject})" if subject else script
    if script in SCHEDULE_SCRIPTS and code == Status.NOT_FOUND:
        raise ScheduleNotFoundError(f"no schedule {subject!r}")
    if script in JOB_SCRIPTS:
        if code == Status.EXISTS:
            raise JobExistsError(f"job {subject!r} already exists (status {detail})")
        if code == Status.NOT_FOUND:
            raise JobNotFoundError(f"no job {subject!r} (never enqueued, or its result expired)")
        if code == Status.NOT_ELIGIBLE:
            raise JobStateError(f"job {subject!r} is {detail}, not failed or cancelled")
    if code == Status.LEASE_LOST:
        raise LeaseLostError(f"{where}: lease lost" + (f" ({detail})" if detail else ""))
    if code == Status.NAMESPACE_MISSING:
        raise NamespaceMissingError(
            f"{where}: the namespace's metadata is missing or was re-created "
            "(Redis flushed or restarted without persistence)"
        )
    if code == Status.EXISTS:
        raise InstanceExistsError(f"instance {subject!r} already exists (status {detail})")
    if code == Status.NOT_FOUND:
        raise InstanceNotFoundError(f"instance {subject!r} not found")
    if script == "reset_instance" and code == Status.RUNNING:
        raise InstanceRunningError(
            f"instance {subject!r} is {detail} and not held: only a failed, held, completed or "
            "cancelled instance can be reset (cancel it first); nothing changed"
        )
    if code == Status.RUNNING:
        raise InstanceRunningError(
            f"instance {subject!r} is {detail}; pass force=True to delete it anyway"
        )
    if code == Status.ENDED:
        raise InstanceTerminalError(
            f"instance {subject!r} has already ended ({detail}); nothing was sent",
            instance_id=subject,
            status=detail,
        )
    raise StoreError(f"{where}: unexpected status {code} {detail}".rstrip())
