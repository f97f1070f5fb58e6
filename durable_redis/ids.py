"""Ids: the one place that says what an id may contain, and how every derived id is built and read.

A leaf (it imports ``errors`` only), so ``core``, ``storage``, ``runtime`` and the client share it.

**Validation**: :func:`validate_id` ``(value, what, *, rule=NAME)``, one argument order, and the
three rules in one place (docs/security.md has the table):

* ``NAME``: at most 256 bytes, none of ``{ } \\n \\r`` NUL. Ids a caller names at the client
  (instance and job ids, event, schedule and orchestration names).
* ``STORED``: at most 512 bytes, no ``\\n`` or NUL. Any id the storage layer writes (a derived id
  is a user id plus a bounded suffix).
* ``SESSION``: at most 256 bytes, no ``\\n`` or NUL. Session ids, checked by the engine up front;
  they sit in recorded histories, so this rule cannot tighten.

Every id must be a non-empty ``str`` encodable as UTF-8 (no lone surrogates). ``\\n`` and NUL are
the separators of the stored composite ids below, so every rule forbids them.

**Derived ids** (the stored format; ``tests/golden`` pins it): built here and read back here,
never by splitting on ``":"`` elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from durable_redis.errors import InvalidIdError

__all__ = [
    "MAX_ID_BYTES",
    "MAX_STORED_ID_BYTES",
    "NAME",
    "SESSION",
    "STORED",
    "ClientMessageKind",
    "IdRule",
    "activity_attempt_id",
    "activity_completion_id",
    "activity_key",
    "carried_update_id",
    "child_cancel_id",
    "child_result_id",
    "child_start_id",
    "client_message_id",
    "continue_as_new_id",
    "default_child_id",
    "event_to_instance_id",
    "flow_group",
    "job_idempotency_key",
    "list_cursor",
    "lock_token_nonce",
    "parse_activity_key",
    "parse_flow_group",
    "parse_list_cursor",
    "parse_work_item_id",
    "schedule_job_id",
    "schedule_now_instance_id",
    "schedule_now_job_id",
    "session_key",
    "tick_instance_id",
    "timer_message_id",
    "valid_id",
    "validate_id",
    "work_item_id",
]

MAX_ID_BYTES = 256
MAX_STORED_ID_BYTES = 512


@dataclass(frozen=True, slots=True)
class IdRule:
    """What an id of one kind may be: at most ``max_bytes`` of UTF-8, none of ``forbidden``."""

    name: str
    max_bytes: int
    forbidden: tuple[tuple[str, str], ...]  # (character, how an error message names it)


_SEPARATORS = (("\n", "a newline"), ("\0", "NUL"))
NAME = IdRule(
    "name",
    MAX_ID_BYTES,
    (("{", "'{'"), ("}", "'}'"), ("\n", "a newline"), ("\r", "a carriage return"), ("\0", "NUL")),
)
STORED = IdRule("stored", MAX_STORED_ID_BYTES, _SEPARATORS)
SESSION = IdRule("session", MAX_ID_BYTES, _SEPARATORS)


def validate_id(value: object, what: str = "instance id", *, rule: IdRule = NAME) -> str:
    """``value`` if it is a valid id under ``rule``, else InvalidIdError (nothing is written)."""
    if not isinstance(value, str):
        raise InvalidIdError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidIdError(f"{what} must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidIdError(f"{what} {value!r} is not encodable as UTF-8: {exc}") from None
    if size > rule.max_bytes:
        raise InvalidIdError(f"{what} is {size} bytes long; the limit is {rule.max_bytes}")
    for char, label in rule.forbidden:
        if char in value:
            raise InvalidIdError(f"{what} {value!r} must not contain {label}")
    return value


def valid_id(value: object, *, rule: IdRule = NAME) -> bool:
    """:func:`validate_id` as a predicate."""
    try:
        validate_id(value, rule=rule)
    except InvalidIdError:
        return False
    return True


# -- activities -----------------------------------------------------------------------------------
def activity_key(execution_id: int, activity_id: int) -> str:
    """An activity's key, unique per instance: ``"<execution>:<activity id>"``."""
    return f"{execution_id}:{activity_id}"


def parse_activity_key(key: str) -> tuple[int, int] | None:
    """``(execution_id, activity_id)`` of an :func:`activity_key`; None if it is not one."""
    execution, sep, activity = key.partition(":")
    if not (sep and execution.isdigit() and activity.isdigit()):
        return None
    return int(execution), int(activity)


def work_item_id(instance_id: str, key: str) -> str:
    """A work item's id (deterministic: a retried commit cannot enqueue an activity twice)."""
    return f"{instance_id}\n{key}"


def parse_work_item_id(item: str) -> tuple[str, str] | None:
    """``(instance_id, activity_key)`` of a :func:`work_item_id`; None if it is not one."""
    instance_id, sep, key = item.partition("\n")
    return (instance_id, key) if sep else None


def activity_attempt_id(instance_id: str, execution_id: int, first_attempt_id: int) -> str:
    """The idempotency key of one ``call_activity``: the same on every attempt and redelivery."""
    return f"{instance_id}:{execution_id}:{first_attempt_id}"


def job_idempotency_key(job_id: str) -> str:
    return f"job:{job_id}"


def activity_completion_id(instance_id: str, key: str) -> str:
    """The message id of an activity attempt's completion (the same on every re-run)."""
    return f"{instance_id}:{key}:done"


# -- leases ---------------------------------------------------------------------------------------
def lock_token_nonce(token: str) -> str:
    """The nonce of a lock token ``"<seq>:<nonce>"`` (the scripts build it; the test clock
    reads which store took a lock)."""
    return token.partition(":")[2]


# -- sessions -------------------------------------------------------------------------------------
def session_key(instance_id: str, session_id: str) -> str:
    """A session's identity inside the partition's session HASH."""
    return f"{instance_id}\n{session_id}"


# -- messages an orchestration turn sends (prefix: the instance and its execution) ----------------
def _turn(instance_id: str, execution_id: int) -> str:
    return f"{instance_id}:{execution_id}"


def timer_message_id(instance_id: str, execution_id: int, timer_id: int) -> str:
    return f"{_turn(instance_id, execution_id)}:{timer_id}:timer"


def child_start_id(instance_id: str, execution_id: int, scheduled_id: int) -> str:
    return f"{_turn(instance_id, execution_id)}:{scheduled_id}:start"


def child_cancel_id(instance_id: str, execution_id: int, scheduled_id: int) -> str:
    return f"{_turn(instance_id, execution_id)}:{scheduled_id}:cancel"


def event_to_instance_id(instance_id: str, execution_id: int, event_id: int) -> str:
    return f"{_turn(instance_id, execution_id)}:{event_id}:event"


def continue_as_new_id(instance_id: str, execution_id: int) -> str:
    return f"{_turn(instance_id, execution_id)}:continue"


def carried_update_id(instance_id: str, execution_id: int, update_id: str) -> str:
    return f"{_turn(instance_id, execution_id)}:carry:{update_id}"


def child_result_id(child_instance_id: str, parent_execution_id: int, scheduled_id: int) -> str:
    """The message id of a child's result to its parent."""
    return f"{child_instance_id}:result:{parent_execution_id}:{scheduled_id}"


def default_child_id(instance_id: str, default_id: int | str) -> str:
    """A child orchestration's id when the parent names none (deterministic): ``default_id`` is
    the engine's (the event id, or ``"<execution>.<event id>"`` past a reset point)."""
    return f"{instance_id}:sub:{default_id}"


# -- list cursors (opaque to callers; ``Client.list_instances`` passes them back) -----------------
def list_cursor(partition: int | None, score: object, after: str) -> str:
    """``"<partition>:<created ms>:<instance id>"``; partition None (``"m"``) for a merged walk."""
    return f"{'m' if partition is None else partition}:{score}:{after}"


def parse_list_cursor(cursor: object) -> tuple[int | None, str, str] | None:
    """``(partition or None, created ms, instance id)`` of a :func:`list_cursor`; None if not."""
    parts = cursor.split(":", 2) if isinstance(cursor, str) else []
    if len(parts) != 3 or not parts[1].lstrip("-").isdigit():
        return None
    if parts[0] != "m" and not parts[0].isdigit():
        return None
    return (None if parts[0] == "m" else int(parts[0])), parts[1], parts[2]


# -- messages a client sends (a token per call: a transport retry re-sends the same id) ----------
ClientMessageKind = Literal["start", "event", "cancel", "update", "queue"]


def client_message_id(kind: ClientMessageKind, token: str) -> str:
    """``"<kind>:<token>"``: a start, event, cancel, update or queued event from a client."""
    return f"{kind}:{token}"


# -- job flow groups ------------------------------------------------------------------------------
def flow_group(queue: str, key: str) -> str:
    """A flow-key group of a queue, ``"<queue>:<key>"`` (the jq:groups / wq:groups HASH field stem;
    ``lua/includes/jobs.lua`` builds it too). Queue names hold no ``":"``."""
    return f"{queue}:{key}"


def parse_flow_group(group: str) -> tuple[str, str]:
    """``(queue, key)`` of a :func:`flow_group`."""
    queue, _, key = group.partition(":")
    return queue, key


# -- schedules ------------------------------------------------------------------------------------
def schedule_job_id(name: str, tick_ms: int) -> str:
    """The id of one schedule tick's job (before any partition suffix)."""
    return f"sched:{name}:{tick_ms}"


def tick_instance_id(name: str, tick_ms: int) -> str:
    """The instance id of one tick of an orchestration schedule (before any partition suffix):
    deterministic, so a re-run tick starts nothing."""
    return f"{name}@{tick_ms}"


def schedule_now_job_id(name: str, token: str) -> str:
    """The job of a schedule's ``trigger`` (run now, beside the ticks)."""
    return f"sched:{name}:now:{token}"


def schedule_now_instance_id(name: str, token: str) -> str:
    """The instance of an orchestration schedule's ``trigger``: ``<name>@now:<token>``."""
    return f"{name}@now:{token}"
