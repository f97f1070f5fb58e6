"""``core.to_commit``: a turn's result encoded as the turn contract's ``TurnCommit``; and the
contract module is a leaf (standard library only) holding the one status set."""

from __future__ import annotations

import ast
from pathlib import Path

from durable_redis import contract
from durable_redis.contract import FailureKind, InstanceCreate, InstanceStatus
from durable_redis.core import (
    App,
    OrchestrationContext,
    OrchestrationStatus,
    decode_event,
    decode_failure,
    decode_message,
    decode_task,
    fail_instance,
    run_turn,
    start_message,
    to_commit,
)
from durable_redis.errors import FailureDetails
from durable_redis.storage import InstanceStatus as StorageStatus
from durable_redis.storage.keys import STATUS_ORDER

app = App("commit")


@app.activity
def work(ctx: object, n: int) -> int:
    return n


@app.orchestration
async def child(ctx: OrchestrationContext, n: int) -> int:
    return n


@app.orchestration
async def parent(ctx: OrchestrationContext, n: int) -> int:
    ctx.set_custom_status("busy")
    first = ctx.call_activity(work, n)
    kid = ctx.call_sub_orchestration(child, n, instance_id="kid")
    return await first + await kid


def test_to_commit_encodes_every_part_of_the_turn() -> None:
    result = run_turn(
        app, "p", [], [start_message(name="parent", input=app.codec.encode(2))], now_ms=1_000
    )
    commit = to_commit(result)
    assert commit.status is InstanceStatus.RUNNING is result.status
    assert (commit.execution_id, commit.expected_history_len) == (1, 0)
    assert [decode_event(e) for e in commit.events] == list(result.new_events)
    assert (commit.name, commit.version, commit.input) == ("parent", "", app.codec.encode(2))
    assert commit.set_custom_status and commit.custom_status == app.codec.encode("busy")
    [item] = commit.work_items
    [task] = result.activities
    assert (item.activity_key, decode_task(item.data), item.session_id) == ("1:3", task, None)
    [out] = commit.messages
    [sent] = result.outgoing
    assert (out.instance_id, out.message_id) == ("kid", sent.message_id)
    assert decode_message(out.data) == sent.message
    assert out.create == InstanceCreate(name="child", parent_instance_id="p", input=b"\x02")
    assert (commit.output, commit.error) == (None, None)


def test_to_commit_of_a_failed_turn_encodes_the_failure() -> None:
    started = run_turn(app, "c", [], [start_message(name="child", input=b"\x01")], now_ms=1)
    assert started.status is OrchestrationStatus.COMPLETED
    details = FailureDetails(FailureKind.POISON, "PoisonMessageError", "boom")
    failed = fail_instance([], details, now_ms=5, instance_id="x", execution_id=1)
    commit = to_commit(failed)
    assert commit.status is InstanceStatus.FAILED
    assert commit.error is not None and decode_failure(commit.error) == details
    assert decode_failure(commit.error).kind == "poison"  # stored as the plain string


def test_one_status_set() -> None:
    assert OrchestrationStatus is InstanceStatus is StorageStatus
    assert tuple(s.value for s in InstanceStatus) == STATUS_ORDER
    assert {s for s in InstanceStatus if s.is_terminal} == {
        InstanceStatus.COMPLETED,
        InstanceStatus.FAILED,
        InstanceStatus.CANCELLED,
    }


def test_the_contract_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(contract.__file__).read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported == {"__future__", "enum", "collections.abc", "dataclasses"}
