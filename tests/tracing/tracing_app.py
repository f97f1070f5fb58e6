"""The app of the tracing tests (``tracing_app:app``), in-process and in worker processes.

Test-only hook, not in the library: when ``DURABLE_REDIS_OTEL_TEST_FILE`` is set at import (a
worker process started by the test), this module installs an OpenTelemetry SDK tracer provider
whose exporter appends every finished span as one JSON line to that file, so the test process
can read the spans another process recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.errors import ActivityFailedError

ENV = "DURABLE_REDIS_OTEL_TEST_FILE"

app = App("tracing")


@app.activity
async def double(ctx: ActivityContext, x: int) -> int:
    with trace.get_tracer("tracing-test").start_as_current_span("inside double"):
        return 2 * x


@app.activity
def boom(ctx: ActivityContext, x: int) -> int:
    raise ValueError(f"boom {x}")


@app.orchestration
async def child(ctx: OrchestrationContext, x: int) -> int:
    return int(await ctx.call_activity(double, x))


@app.orchestration
async def parent(ctx: OrchestrationContext, x: int) -> list[int]:
    a = await ctx.call_activity(double, x)  # turn 1 schedules it, turn 2 takes its result
    b = await ctx.call_sub_orchestration(child, a, instance_id=f"{ctx.instance_id}:child")
    with contextlib.suppress(ActivityFailedError):
        await ctx.call_activity(boom, b)
    return [a, b]


def span_record(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent is not None else None,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "pid": os.getpid(),
    }


class JsonLinesExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object a line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


if os.environ.get(ENV):
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ[ENV])))
    trace.set_tracer_provider(_provider)
