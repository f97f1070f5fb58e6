"""Development tooling: private Redis servers and worker processes for demos, examples, tests
and benchmarks. Nothing here is needed to run durable_redis in production.

* :class:`RedisServer` (``devtools/server.py``): one private ``redis-server`` process.
* :class:`LocalCluster` (``devtools/cluster_server.py``): a private Redis Cluster.
* :class:`WorkerProcesses` (``devtools/workers.py``): worker processes for ``module:app``.
"""

from __future__ import annotations

from durable_redis.devtools.cluster_server import LocalCluster
from durable_redis.devtools.server import (
    RedisServer,
    find_redis_server,
    redis_server_version,
    resolve_redis_server,
)
from durable_redis.devtools.workers import WorkerProcess, WorkerProcesses

__all__ = [
    "LocalCluster",
    "RedisServer",
    "WorkerProcess",
    "WorkerProcesses",
    "find_redis_server",
    "redis_server_version",
    "resolve_redis_server",
]
