"""durable_redis: durable execution for Python on nothing but Redis."""

from __future__ import annotations

__version__ = "0.1.0"
