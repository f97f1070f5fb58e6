"""The peers the harness runs, in report order (a leaf: the harness and the report read it)."""

from __future__ import annotations

QUEUE_PEERS = ["ardiq", "dramatiq", "taskiq", "saq", "bullmq", "arq", "streaq", "celery", "rq"]
# durable-execution peers on DUROXIDE_WORKLOADS: script in --peers-dir, provider, config
DURABLE_PEERS = {
    "duroxide": ("duroxide_bench.py", "file", "default"),
    "redflow": ("redflow_bench.py", "redis", "default"),
    "dbos": ("dbos_bench.py", "file", "default"),
}
