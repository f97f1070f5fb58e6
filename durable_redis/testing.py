"""Testing helpers: replay recorded histories against current code, and run apps in memory.

Gate a deploy on replay::

    from durable_redis.testing import assert_replays
    for path in Path("histories").glob("*.history"):
        assert_replays(app, path)      # raises NondeterminismError naming the divergence

The same gate over many histories, read from Redis (filters by name, status, created or
updated time) or from a directory that ``durable-redis export`` wrote, as ``durable-redis
replay`` runs it, with the source line of each divergence::

    report = await replay_gate(app, client=client, status="running", since=week_ago)
    report.check()                     # AssertionError listing every divergence

Test an app on the real engine (the production worker, its Lua scripts, a private Redis) with a
virtual clock, mocks and injected faults: ``TestEnvironment`` (docs/testing.md), and the pytest
fixtures ``durable_env`` / ``durable_client`` of the ``durable_redis.pytest_plugin``.

``InMemoryRunner`` drives core's turn function in this process with no Redis at all: a second,
simpler interpreter (no message dedup, sessions or retries on the real store), kept for property
tests of the replay engine; a test of your app belongs on ``TestEnvironment``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from durable_redis import ids
from durable_redis._replay_gate import Divergence, ReplayGateReport, replay_gate
from durable_redis._test_histories import (
    HistorySource,
    load_history,
    replay_history,
    save_history,
)
from durable_redis.core import (
    ActivityContext,
    App,
    Codec,
    HistoryEvent,
    TurnResult,
    activity_completed,
    activity_failed,
    orchestration_metadata,
    run_turn,
)
from durable_redis.core import messages as msg
from durable_redis.core.turn import OrchestrationStatus
from durable_redis.errors import FailureDetails, NondeterminismError

if TYPE_CHECKING:
    from durable_redis._testenv import ActivityFault, SyncTestEnvironment, TestEnvironment

__all__ = [
    "ActivityFault",
    "Divergence",
    "InMemoryRunner",
    "Instance",
    "ReplayGateReport",
    "SyncTestEnvironment",
    "TestEnvironment",
    "assert_replays",
    "load_history",
    "replay_gate",
    "replay_history",
    "save_history",
]


def __getattr__(name: str) -> Any:
    # the environment needs Redis and anyio: loaded on first use, so importing this module (for
    # assert_replays, say) stays as light as core
    if name in ("ActivityFault", "SyncTestEnvironment", "TestEnvironment"):
        from durable_redis import _testenv

        return getattr(_testenv, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def assert_replays(app: App, history: HistorySource, *, codec: Codec | None = None) -> None:
    """Raise NondeterminismError if the current code diverges from the recorded history."""
    result = replay_history(app, history, codec=codec)
    if result.nondeterminism is not None:
        raise result.nondeterminism
    if result.new_events:
        raise NondeterminismError(
            f"replay emitted {len(result.new_events)} commands beyond the recorded history",
            recorded="the end of the history",
            actual=repr(result.new_events[0]),
        )


# -- in-memory runner ---------------------------------------------------------------------------
@dataclass
class Instance:
    instance_id: str
    name: str
    history: list[HistoryEvent] = field(default_factory=list)
    queue: list[tuple[int, str, msg.Message]] = field(default_factory=list)  # (visible, id, msg)
    status: OrchestrationStatus = OrchestrationStatus.PENDING
    output: bytes | None = None
    failure: FailureDetails | None = None
    custom_status: bytes | None = None
    executions: list[list[HistoryEvent]] = field(default_factory=list)  # finished executions
    turns: list[TurnResult] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)


class InMemoryRunner:
    """Drives an App with ``run_turn`` and in-process activities on a virtual clock.

    ``rng`` randomises delivery: each turn takes a random non-empty prefix of the visible messages,
    activities complete in random order and turns interleave with activities at random, which is
    how property tests explore interleavings.
    """

    def __init__(
        self,
        app: App,
        *,
        codec: Codec | None = None,
        start_ms: int = 1_700_000_000_000,
        rng: random.Random | None = None,
        activity_override: Callable[[ActivityContext, str, Any], Any] | None = None,
    ) -> None:
        self.app = app
        self.codec = codec if codec is not None else app.codec
        self.now_ms = start_ms
        self.rng = rng
        self.instances: dict[str, Instance] = {}
        self.pending_tasks: list[msg.ActivityTask] = []
        self.cancelled_keys: set[tuple[str, str]] = set()
        self.activity_override = activity_override
        self.activity_log: list[msg.ActivityTask] = []

    # -- client side ----------------------------------------------------------------------------
    def start(
        self, orchestration: str | Callable[..., Any], input: Any = None, *, instance_id: str = "i"
    ) -> str:
        name = (
            orchestration
            if isinstance(orchestration, str)
            else orchestration_metadata(orchestration).name
        )
        start = msg.StartOrchestration(name=name, input=self.codec.encode(input))
        self._create(instance_id, name)
        self._enqueue(instance_id, ids.client_message_id("start", instance_id), start)
        return instance_id

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        self._enqueue(
            instance_id,
            f"event:{len(self.instances[instance_id].seen_ids)}:{name}",
            msg.EventRaised(name=name, data=self.codec.encode(data)),
        )

    def cancel(self, instance_id: str, reason: str = "") -> None:
        self._enqueue(
            instance_id,
            ids.client_message_id("cancel", instance_id),
            msg.CancelRequested(reason=reason),
        )

    def result(self, instance_id: str) -> Any:
        inst = self.instances[instance_id]
        if inst.status is not OrchestrationStatus.COMPLETED or inst.output is None:
            raise AssertionError(f"{instance_id} is {inst.status}: {inst.failure}")
        return self.codec.decode(inst.output)

    # -- driving --------------------------------------------------------------------------------
    def run(self, *, max_steps: int = 100_000, advance_clock: bool = True) -> None:
        """Run until nothing is left to do (timers are fired by advancing the virtual clock)."""
        for _ in range(max_steps):
            if self.step():
                continue
            due = [v for inst in self.instances.values() for v, _, _ in inst.queue]
            if not advance_clock or not due:
                return
            self.now_ms = max(self.now_ms, min(due))
        raise AssertionError("InMemoryRunner.run did not settle")

    def step(self) -> bool:
        """Do one unit of work (a turn or an activity); False if nothing is visible now."""
        choices: list[Callable[[], None]] = []
        for inst in self.instances.values():
            if any(v <= self.now_ms for v, _, _ in inst.queue):
                choices.append(lambda inst=inst: self._turn(inst))  # type: ignore[misc]
        if self.pending_tasks:
            choices.append(self._run_activity)
        if not choices:
            return False
        choice = self.rng.choice(choices) if self.rng is not None else choices[0]
        choice()
        return True

    def _turn(self, inst: Instance) -> None:
        visible = [q for q in inst.queue if q[0] <= self.now_ms]  # FIFO, like storage
        if self.rng is not None:
            visible = visible[: self.rng.randint(1, len(visible))]
        for q in visible:
            inst.queue.remove(q)
        result = run_turn(
            self.app,
            inst.instance_id,
            inst.history,
            [m for _, _, m in visible],
            now_ms=self.now_ms,
            codec=self.codec,
        )
        self.apply(inst, result)

    def apply(self, inst: Instance, result: TurnResult) -> None:
        """Commit a turn the way storage does."""
        inst.turns.append(result)
        if result.history_len_before == 0 and result.new_events and inst.history:
            inst.executions.append(inst.history)
            inst.history = []
        assert len(inst.history) == result.history_len_before
        inst.history.extend(result.new_events)
        inst.status = result.status
        if result.custom_status_changed:
            inst.custom_status = result.custom_status
        if result.status.is_terminal:
            inst.output, inst.failure = result.output, result.failure
        for key in result.cancelled_activities:
            self.cancelled_keys.add((inst.instance_id, key))
        self.pending_tasks.extend(result.activities)
        self.pending_tasks = [
            t
            for t in self.pending_tasks
            if (t.instance_id, t.activity_key) not in self.cancelled_keys
        ]
        for out in result.outgoing:
            if out.create is not None and out.instance_id not in self.instances:
                self._create(out.instance_id, out.create.name)
            if out.instance_id in self.instances:
                self._enqueue(out.instance_id, out.message_id, out.message, out.visible_at_ms)

    def _run_activity(self) -> None:
        index = self.rng.randrange(len(self.pending_tasks)) if self.rng is not None else 0
        task = self.pending_tasks.pop(index)
        self.activity_log.append(task)
        ctx = ActivityContext(
            instance_id=task.instance_id,
            execution_id=task.execution_id,
            activity_id=task.activity_id,
            name=task.name,
            attempt=task.attempt,
            session_id=task.session_id,
            worker_id="in-memory",
        )
        message: msg.Message
        try:
            value = self._call_activity(ctx, task)
            message = activity_completed(task, value, self.codec)
        except Exception as exc:
            message = activity_failed(task, exc)
        self._enqueue(task.instance_id, task.completion_message_id, message)

    def _call_activity(self, ctx: ActivityContext, task: msg.ActivityTask) -> Any:
        definition = self.app.get_activity(task.name)
        value = self.codec.decode(task.input, definition.input_type) if task.input else None
        if self.activity_override is not None:
            return self.activity_override(ctx, task.name, value)
        args = (ctx, value) if definition.takes_input else (ctx,)
        result = definition.fn(*args)
        if definition.is_async:
            return asyncio.run(result)
        return result

    def _create(self, instance_id: str, name: str) -> None:
        self.instances.setdefault(instance_id, Instance(instance_id=instance_id, name=name))

    def _enqueue(
        self, instance_id: str, message_id: str, message: msg.Message, visible_at: int | None = None
    ) -> None:
        inst = self.instances[instance_id]
        if message_id in inst.seen_ids:
            return
        inst.seen_ids.add(message_id)
        inst.queue.append(
            (visible_at if visible_at is not None else self.now_ms, message_id, message)
        )
