"""The dashboard's ``/metrics``: namespace-wide gauges for Prometheus, read at scrape time.

Worker processes export what they do (``runtime.metrics``); this exports what Redis holds, which
no single worker knows: instances by status, queue depths and the queues' lag, per partition,
the live workers, and the background jobs queued, running and finished (retained). Needs
``prometheus_client`` (the ``metrics`` extra); without it the route answers 404 with that hint.
"""

from __future__ import annotations

from typing import Any

__all__ = ["render_metrics"]


def render_metrics(overview: dict[str, Any]) -> bytes:
    """``overview`` (``views.overview_page``) in the Prometheus text format."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    instances = Gauge(
        "durable_redis_instances", "Instances by status", ["partition", "status"], registry=registry
    )
    depth = Gauge(
        "durable_redis_queue_depth", "Queued items", ["partition", "queue"], registry=registry
    )
    lag = Gauge(
        "durable_redis_oldest_waiting_seconds",
        "Age of the oldest waiting item (0 when none waits)",
        ["partition", "queue"],
        registry=registry,
    )
    workers = Gauge("durable_redis_live_workers", "Live worker processes", registry=registry)
    for p in overview["partitions"]:
        part = str(p.partition)
        for status, n in p.counts.items():
            instances.labels(part, status).set(n)
        for queue, n in (
            ("orchestrations_ready", p.ready_instances),
            ("orchestrations_waiting_timer", p.timers),
            ("turns_running", p.locked_instances),
            ("activities_ready", p.work_ready),
            ("session_activities_ready", p.session_work_ready),
            ("activities_delayed", p.work_delayed),
            ("activities_running", p.work_leased),
            ("sessions_open", p.sessions_open),
        ):
            depth.labels(part, queue).set(n)
        lag.labels(part, "orchestrations").set((p.oldest_message_age_ms or 0) / 1000)
        lag.labels(part, "activities").set((p.oldest_work_age_ms or 0) / 1000)
    workers.set(overview["workers"])
    if overview.get("job_counts"):
        jobs = Gauge(
            "durable_redis_jobs",
            "Background jobs: queued (ready or delayed), running, finished (results retained)",
            ["state"],
            registry=registry,
        )
        for state in ("queued", "running", "finished"):
            jobs.labels(state).set(overview["job_counts"][state])
    return bytes(generate_latest(registry))
