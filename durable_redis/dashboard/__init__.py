"""The web dashboard: ``durable-redis dashboard``, or :func:`create_app` mounted in any ASGI app.

::

    from fastapi import FastAPI
    from durable_redis.dashboard import create_app

    api = FastAPI()
    api.mount("/durable", create_app("redis://localhost:6379/0", auth_token="..."))

It reads Redis directly (no other server, no database). Needs the ``dashboard`` extra
(``pip install 'durable-redis[dashboard]'``: Starlette, Jinja2, uvicorn).
"""

from __future__ import annotations

from durable_redis.dashboard.app import create_app

__all__ = ["create_app"]
