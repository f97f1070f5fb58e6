"""Small codecs shared by the RedisStore modules: decoding script replies and hashes
(``_s``, ``_pairs``, ``_info``, ``_work_leases``), encoding optional arguments (``_opt``), list
cursors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from durable_redis.storage.base import InstanceInfo, InstanceStatus, WorkItemLease


def _s(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _opt(value: Any) -> str:
    return "" if value is None else str(int(value))


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return {_s(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _info(instance_id: str, fields: dict[str, Any]) -> InstanceInfo:
    def num(name: str) -> int | None:
        v = fields.get(name)
        return None if v is None else int(v)

    parent = fields.get("parent")
    return InstanceInfo(
        instance_id=instance_id,
        name=_s(fields.get("name", b"")),
        version=_s(fields.get("version", b"")),
        status=InstanceStatus(_s(fields.get("status", b"pending"))),
        execution_id=num("exec") or 0,
        created_at_ms=num("created") or 0,
        updated_at_ms=num("updated") or 0,
        completed_at_ms=num("completed"),
        parent_instance_id=None if parent is None else _s(parent),
        output=fields.get("output"),
        error=fields.get("error"),
        custom_status=fields.get("custom"),
        input=fields.get("input"),
        held=None if fields.get("held") is None else _s(fields["held"]),
        held_at_ms=num("held_at"),
        fail_requested=fields.get("held_fail") is not None,
    )


def _work_leases(flat: Sequence[Any], until: int) -> list[WorkItemLease]:
    """Leases from a ``{item_id, token, iid, activity_key, session_id, data, attempt, ...}``
    reply (fetch_work_items, commit_turn's taken items)."""
    return [
        WorkItemLease(
            item_id=_s(flat[i]),
            token=_s(flat[i + 1]),
            instance_id=_s(flat[i + 2]),
            activity_key=_s(flat[i + 3]),
            session_id=_s(flat[i + 4]) or None,
            data=flat[i + 5],
            attempt=int(flat[i + 6]),
            lease_until_ms=until,
        )
        for i in range(0, len(flat), 7)
    ]
