"""The activities every deploy of the ``order`` orchestration has (tests/e2e/test_e2e_deploy.py):
each deploy module builds its own app around its own ``order``."""

from __future__ import annotations

from typing import Any

from durable_redis.core import ActivityContext, App


def deploy_app() -> tuple[App, Any, Any]:
    """A fresh app with the ``reserve`` and ``ship`` activities: (app, reserve, ship)."""
    app = App("e2e-deploy")

    @app.activity
    def reserve(ctx: ActivityContext, item: str) -> str:
        return f"reserved {item}"

    @app.activity
    def ship(ctx: ActivityContext, item: str) -> str:
        return f"shipped {item}"

    return app, reserve, ship
