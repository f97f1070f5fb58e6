"""The worker's runner of local activities (``_bridge.local_runner``): sync, async, timeout."""

from __future__ import annotations

import threading

from durable_redis.core import ActivityContext, App
from durable_redis.core import messages as msg
from durable_redis.runtime import _bridge

app = App("local-runner")
release = threading.Event()


@app.activity
def triple(ctx: ActivityContext, n: int) -> int:
    return 3 * n


@app.activity
async def triple_async(ctx: ActivityContext, n: int) -> int:
    return 3 * n


@app.activity
def stuck(ctx: ActivityContext) -> None:
    release.wait(10)


def _task(name: str, value: object, timeout_ms: int | None = None) -> msg.ActivityTask:
    return msg.ActivityTask(
        instance_id="i",
        execution_id=1,
        activity_id=2,
        name=name,
        input=app.codec.encode(value),
        timeout_ms=timeout_ms,
    )


def test_sync_async_failure_and_timeout() -> None:
    run = _bridge.local_runner(app, app.codec, "w1")
    done = run([_task("triple", 2), _task("triple_async", 3, timeout_ms=5000)])
    assert [type(m) for m in done] == [msg.ActivityCompleted, msg.ActivityCompleted]
    assert app.codec.decode(done[0].result, int) == 6  # type: ignore[union-attr]
    assert app.codec.decode(done[1].result, int) == 9  # type: ignore[union-attr]
    try:
        (late,) = run([_task("stuck", None, timeout_ms=50)])
    finally:
        release.set()
    assert isinstance(late, msg.ActivityFailed) and late.failure.kind == "timeout"
    assert late.failure.type_name == "ActivityTimeoutError"
    (unknown,) = run([_task("missing", 1)])
    assert isinstance(unknown, msg.ActivityFailed)
    assert unknown.failure.type_name == "NotRegisteredError"
