"""Workers: orchestration and activity dispatchers, lease renewal, sessions, graceful shutdown."""

from __future__ import annotations

from durable_redis.runtime.options import WorkerOptions, new_worker_id
from durable_redis.runtime.process import load_app, run_worker, serve
from durable_redis.runtime.worker import Worker

__all__ = ["Worker", "WorkerOptions", "load_app", "new_worker_id", "run_worker", "serve"]
