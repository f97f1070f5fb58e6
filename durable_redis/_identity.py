"""What a client names, resolved: an orchestration or activity given as a function or as a
registered name, checked against the client's ``App`` (when it has one)."""

from __future__ import annotations

from typing import Any

from durable_redis import core
from durable_redis.core.jobs import DEFAULT_QUEUE
from durable_redis.core.registry import App
from durable_redis.errors import NotRegisteredError
from durable_redis.ids import validate_id

__all__ = ["activity_identity", "orchestration_identity"]


def orchestration_identity(orchestration: Any, app: App | None) -> tuple[str, str, Any]:
    """(name, version, result type or None) of a function or a registered name."""
    if isinstance(orchestration, str):
        validate_id(orchestration, "orchestration name")
        if app is None:
            return orchestration, "", None  # the workers decide whether they know it
        try:
            registered = app.get_orchestration(orchestration)
        except NotRegisteredError:
            raise NotRegisteredError(
                f"orchestration {orchestration!r} is not registered on this client's app "
                f"{getattr(app, 'name', '')!r}; a client made without an app leaves that check "
                "to the workers"
            ) from None
        return orchestration, registered.version or "", registered.result_type
    meta = core.orchestration_metadata(orchestration)
    return meta.name, meta.version or "", meta.result_type


def activity_identity(activity: Any, app: App | None) -> tuple[str, Any, str]:
    """(registered name, result type or None, queue) of an activity function or name."""
    if isinstance(activity, str):
        validate_id(activity, "activity name")
        if app is None:
            return activity, None, DEFAULT_QUEUE  # the workers decide whether they know it
        try:
            found = app.get_activity(activity)
            return activity, found.result_type, found.queue
        except NotRegisteredError:
            raise NotRegisteredError(
                f"activity {activity!r} is not registered on this client's app "
                f"{getattr(app, 'name', '')!r}; a client made without an app leaves that check "
                "to the workers"
            ) from None
    meta = core.activity_metadata(activity)
    if app is not None and meta.name not in app.activity_names:
        raise NotRegisteredError(
            f"activity {meta.name!r} is not registered on this client's app "
            f"{getattr(app, 'name', '')!r}"
        )
    return meta.name, meta.result_type, meta.queue
