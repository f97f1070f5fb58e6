"""OpenTelemetry traces: client start → orchestration turns → activities → child turns, one
trace, the context carried through Redis (docs/operations.md, "Traces")."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durable_redis import core
from durable_redis.client import Client
from durable_redis.core import events as ev
from durable_redis.core import messages as msg
from durable_redis.runtime import Worker, WorkerOptions, _bridge, tracing
from durable_redis.storage.redis_store import RedisStore
from tests.tracing import tracing_app

pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).resolve().parent

OPTIONS = WorkerOptions(lock_timeout=2.0, fetch_wait=0.2, janitor_interval=None)
T_START = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
T_TURN1 = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}
T_TURN2 = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-1111111111111111-01"}


# -- core: the carrier is stamped on new commands only, and stored compatibly ---------------
def test_core_stamps_the_turn_context_on_new_work_and_keeps_recorded_ones() -> None:
    start = core.start_message(name="parent", input=core.MsgpackCodec().encode(3), trace=T_START)
    first = core.run_turn(tracing_app.app, "i1", [], [start], now_ms=1000, trace=T_TURN1)
    started = first.new_events[0]
    assert isinstance(started, ev.OrchestrationStarted) and started.trace == T_START
    scheduled = [e for e in first.new_events if isinstance(e, ev.ActivityScheduled)]
    assert [e.trace for e in scheduled] == [T_TURN1]
    assert [t.trace for t in first.activities] == [T_TURN1]

    done = msg.ActivityCompleted(
        execution_id=1, activity_id=scheduled[0].event_id, result=core.MsgpackCodec().encode(6)
    )
    history = list(first.new_events)
    second = core.run_turn(tracing_app.app, "i1", history, [done], now_ms=2000, trace=T_TURN2)
    assert history[1] == scheduled[0]  # replayed: unchanged, still the first turn's context
    children = [e for e in second.new_events if isinstance(e, ev.SubOrchestrationScheduled)]
    assert [c.trace for c in children] == [T_TURN2]
    starts = [o.message for o in second.outgoing if isinstance(o.message, core.StartOrchestration)]
    assert [s.trace for s in starts] == [T_TURN2]  # the child's turns join the parent's trace


def test_an_untraced_event_is_stored_as_before_and_a_traced_one_round_trips() -> None:
    plain = ev.ActivityScheduled(event_id=2, timestamp_ms=5, name="double", input=b"\x03")
    assert b"trace" not in ev.encode_event(plain)  # the stored format of untraced work
    traced = ev.ActivityScheduled(
        event_id=2, timestamp_ms=5, name="double", input=b"\x03", trace=T_TURN1
    )
    assert ev.decode_event(ev.encode_event(traced)) == traced
    assert hash(traced) == hash(plain)  # the carrier takes no part in hashing
    message = core.start_message(name="parent", trace=T_START)
    assert core.decode_message(core.encode_message(message)) == message


def test_tracing_is_off_without_a_tracer_provider() -> None:
    assert not tracing.enabled()  # opentelemetry is installed, but no provider is set
    with tracing.client_start_span("parent", "i1") as carrier:
        assert carrier is None


# -- in-process: worker and client in this process, real Redis --------------------------------
@pytest.fixture
async def run_worker(store: RedisStore) -> AsyncIterator[Callable[[], Worker]]:
    started: list[Worker] = []
    async with anyio.create_task_group() as tg:

        def start() -> Worker:
            worker = Worker(tracing_app.app, store, OPTIONS)
            started.append(worker)
            tg.start_soon(worker.run)
            return worker

        yield start
        for worker in started:
            worker.stop()


async def _finish(client: Client, iid: str) -> Any:
    return await client.wait_for_completion(iid, timeout=30)


def _check_trace(records: list[dict[str, Any]], history_len: dict[str, int]) -> None:
    """One trace: start → parent turns → activities (→ the user's span) and child turns."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_name.setdefault(r["name"], []).append(r)
    (start,) = by_name["start_orchestration parent"]
    assert {r["trace_id"] for r in records} == {start["trace_id"]}, records
    parent_turns = by_name["orchestration_turn parent"]
    child_turns = by_name["orchestration_turn child"]
    assert {t["parent_id"] for t in parent_turns} == {start["span_id"]}
    parent_turn_ids = {t["span_id"] for t in parent_turns}
    child_turn_ids = {t["span_id"] for t in child_turns}
    assert {t["parent_id"] for t in child_turns} <= parent_turn_ids
    doubles = by_name["activity double"]
    assert len(doubles) == 2
    assert sum(d["parent_id"] in parent_turn_ids for d in doubles) == 1
    assert sum(d["parent_id"] in child_turn_ids for d in doubles) == 1
    inside = by_name["inside double"]
    assert {i["parent_id"] for i in inside} == {d["span_id"] for d in doubles}
    (boom,) = by_name["activity boom"]
    assert boom["parent_id"] in parent_turn_ids and boom["status"] == "ERROR"
    assert boom["attributes"]["durable_redis.outcome"] == "failed"
    # a turn is one span, a replay adds none: the turns' new events add up to the history,
    # each turn starting where the one before ended
    for turns, iid in ((parent_turns, "p1"), (child_turns, "p1:child")):
        turns = sorted(turns, key=lambda t: t["attributes"]["durable_redis.history_events"])
        seen = 0
        for t in turns:
            attrs = t["attributes"]
            assert attrs["durable_redis.instance_id"] == iid
            assert attrs["durable_redis.history_events"] == seen
            seen += attrs["durable_redis.new_events"]
        assert seen == history_len[iid]
        assert turns[-1]["attributes"]["durable_redis.status"] == "completed"


def _records(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    return [tracing_app.span_record(s) for s in exporter.get_finished_spans()]


@pytest.mark.anyio
@pytest.mark.parametrize("turns", ["resumed", "replayed"])
async def test_one_trace_from_client_start_to_activities_and_children_in_process(
    store: RedisStore,
    run_worker: Callable[[], Worker],
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    turns: str,
) -> None:
    if turns == "replayed":  # no suspended orchestration kept: every turn replays its history
        monkeypatch.setattr(_bridge.SuspendedCache, "take", lambda self, lease: None)
    worker = run_worker()
    client = Client(store, app=tracing_app.app)
    await client.start(tracing_app.parent, 3, instance_id="p1")
    assert await _finish(client, "p1") == [6, 12]
    history_len = {iid: len(await client.get_history(iid)) for iid in ("p1", "p1:child")}
    with anyio.fail_after(10):  # the last turn's span ends just after its commit
        while not any(
            r["name"] == "orchestration_turn parent"
            and r["attributes"].get("durable_redis.status") == "completed"
            for r in _records(spans)
        ):
            await anyio.sleep(0.02)
    records = _records(spans)
    _check_trace(records, history_len)
    turn_attrs = [r["attributes"] for r in records if r["name"].startswith("orchestration_turn")]
    assert {a["durable_redis.worker_id"] for a in turn_attrs} == {worker.worker_id}
    resumed = {a["durable_redis.resumed"] for a in turn_attrs}
    assert resumed == ({False} if turns == "replayed" else {False, True})


# -- across processes: client here, a real worker process exporting to a file ---------------
@pytest.mark.e2e
@pytest.mark.anyio
async def test_one_trace_spans_client_turn_and_activity_across_processes(
    redis_url: str,
    namespace: str,
    tmp_path: Path,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(HERE.parent / "e2e"))
    from tests.e2e.e2e_helpers import WorkerPool

    span_file = tmp_path / "worker-spans.jsonl"
    monkeypatch.setenv(tracing_app.ENV, str(span_file))  # the worker's exporter (tracing_app)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    pool = WorkerPool(redis_url, namespace, tmp_path)
    pool.start("tracing_app:app")
    try:
        async with Client.from_url(redis_url, namespace=namespace, app=tracing_app.app) as client:
            await client.start(tracing_app.parent, 3, instance_id="p1")
            assert await _finish(client, "p1") == [6, 12]
            history_len = {iid: len(await client.get_history(iid)) for iid in ("p1", "p1:child")}

        def worker_records() -> list[dict[str, Any]]:
            if not span_file.exists():
                return []
            return [json.loads(line) for line in span_file.read_text().splitlines() if line]

        deadline = time.monotonic() + 15
        while not any(
            r["name"] == "orchestration_turn parent"
            and r["attributes"].get("durable_redis.status") == "completed"
            for r in worker_records()
        ):
            assert time.monotonic() < deadline, pool.logs()
            await anyio.sleep(0.05)
    finally:
        pool.close()
    mine = _records(spans)
    assert [r["name"] for r in mine] == ["start_orchestration parent"]
    theirs = worker_records()
    assert theirs and {r["pid"] for r in theirs} == {pool.workers[0].pid} != {os.getpid()}
    _check_trace(mine + theirs, history_len)


def test_a_malformed_stored_context_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    for bad in ({"traceparent": 5}, {"traceparent": "garbage"}, ["not", "a", "map"]):
        task = msg.ActivityTask(
            instance_id="i1",
            execution_id=1,
            activity_id=2,
            name="double",
            input=b"",
            trace=bad,  # type: ignore[arg-type]
        )
        with tracing.activity_span(task, delivery=1, worker_id="w1") as span:
            span.outcome((True, 6))
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["activity double"] * 3
    assert all(s.parent is None for s in finished)  # roots of new traces, the work unharmed
    assert {(s.attributes or {})["durable_redis.outcome"] for s in finished} == {"completed"}
