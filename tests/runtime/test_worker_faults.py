"""A crash that is the worker's fault, or that hits every instance alike, counts no attempt.

Poison (``max_attempts``) is for an instance whose own code kills its turns. A worker started on
the wrong object, a broken commit path or a codec that fails every turn must hold the work and
say so, never fail live instances as poison (issue 11, bug 1).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from durable_redis import cli
from durable_redis.client import Client
from durable_redis.core import App, MsgpackCodec, OrchestrationContext
from durable_redis.errors import ConfigurationError
from durable_redis.runtime import Worker, WorkerOptions, load_app
from durable_redis.runtime.faults import FaultTracker
from durable_redis.storage.base import InstanceStatus, OrchestrationLease, Store, TurnCommit
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

app = App("faults")


@app.orchestration
async def echo(ctx: OrchestrationContext, x: int) -> int:
    return x


@pytest.fixture
def options(fast_options: WorkerOptions) -> WorkerOptions:
    return dataclasses.replace(fast_options, max_attempts=2)


@pytest.fixture
def shop_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "faults_shop.py").write_text(
        "from durable_redis.core import App, OrchestrationContext\n"
        "app = App('shop')\n"
        "@app.orchestration\n"
        "async def checkout(ctx: OrchestrationContext, x: int) -> int:\n"
        "    return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "faults_shop"
    sys.modules.pop("faults_shop", None)


def test_load_app_refuses_a_function_and_names_it(shop_module: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_app(f"{shop_module}:checkout")
    message = str(info.value)
    assert "'faults_shop:checkout' is the function 'checkout', not an App" in message
    assert "@app.orchestration" in message
    assert "did you mean 'faults_shop:app'" in message
    assert load_app(f"{shop_module}:app").name == "shop"


async def test_worker_refuses_an_object_that_is_not_an_app(store: RedisStore) -> None:
    with pytest.raises(ConfigurationError, match="the function 'echo', not an App"):
        Worker(echo, store)  # type: ignore[arg-type]


def test_cli_worker_on_a_function_exits_non_zero_with_one_line(
    shop_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unreachable URL: the refusal must come before anything is started or dialled.
    rc = cli.main(["worker", f"{shop_module}:checkout", "--redis-url", "redis://127.0.0.1:1/0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1, err
    assert err[0].startswith("durable-redis: ConfigurationError: ")
    assert "is the function 'checkout', not an App" in err[0]


class CountingStore:
    """The real store, with commits that fail ``commit_failures`` times and fetches counted."""

    def __init__(self, store: RedisStore, commit_failures: int = 0) -> None:
        self._store = store
        self.commit_failures = commit_failures
        self.fetched: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def fetch_orchestration(self, **kwargs: Any) -> OrchestrationLease | None:
        lease = await self._store.fetch_orchestration(**kwargs)
        if lease is not None:
            self.fetched[lease.instance_id] = self.fetched.get(lease.instance_id, 0) + 1
        return lease

    async def commit_turn(self, lease: OrchestrationLease, commit: TurnCommit, **kw: Any) -> Any:
        if self.commit_failures > 0:
            self.commit_failures -= 1
            raise RuntimeError("injected: the commit path is broken on this worker")
        return await self._store.commit_turn(lease, commit, **kw)


class BrokenCodec(MsgpackCodec):
    """A worker-wide misconfiguration: every turn crashes inside core, alike."""

    def decode(self, data: bytes, type_hint: Any = None) -> Any:
        raise RuntimeError("this worker's codec is misconfigured")


async def test_a_broken_commit_path_counts_no_attempt(
    store: RedisStore, task_group: anyio.abc.TaskGroup, options: WorkerOptions
) -> None:
    client = Client(store, app)
    iid = await client.start(echo, 7)
    # Three failed commits with max_attempts=2: counted, the third fetch would be poison.
    flaky = CountingStore(store, commit_failures=3)
    worker = Worker(app, cast(Store, flaky), options)
    task_group.start_soon(worker.run)
    try:
        assert await client.wait_for_completion(iid, timeout=30) == 7
    finally:
        worker.stop()
    assert flaky.commit_failures == 0 and flaky.fetched[iid] >= 4
    assert worker._orchestrations.faults.worker_faults == 0  # reset by the success


async def test_a_crash_that_hits_every_instance_alike_poisons_none(
    store: RedisStore, task_group: anyio.abc.TaskGroup, options: WorkerOptions
) -> None:
    client = Client(store, app)
    ids = [await client.start(echo, i, instance_id=f"alike-{i}") for i in range(3)]
    counting = CountingStore(store)
    broken = Worker(app, cast(Store, counting), options, codec=BrokenCodec())
    task_group.start_soon(broken.run)
    # max_attempts=2: counted crashes would fail every instance as poison at its third fetch.
    with anyio.fail_after(30):
        while not all(counting.fetched.get(iid, 0) >= 3 for iid in ids):
            for iid in ids:
                state = await client.get_status(iid)
                assert state is not None and state.status is not InstanceStatus.FAILED, state
            await anyio.sleep(0.05)
    assert broken._orchestrations.faults.worker_faults >= 1
    with anyio.fail_after(10):
        broken.stop()
        while broken.is_running and broken.turns_in_flight:
            await anyio.sleep(0.01)
    for iid in ids:
        state = await client.get_status(iid)
        assert state is not None and state.status is InstanceStatus.PENDING, state
    healthy = Worker(app, store, options)
    task_group.start_soon(healthy.run)
    try:
        assert [await client.wait_for_completion(iid, timeout=20) for iid in ids] == [0, 1, 2]
    finally:
        healthy.stop()


def _crash(where: int) -> RuntimeError:
    try:
        if where == 1:
            raise RuntimeError("in one place")
        raise RuntimeError("in another place")
    except RuntimeError as exc:
        return exc


def test_fault_tracker_counts_one_instances_crash_until_it_hits_another() -> None:
    now = [0.0]
    tracker = FaultTracker(clock=lambda: now[0])
    assert tracker.code_crashed("a", _crash(1)) and tracker.code_crashed("a", _crash(1))
    assert tracker.code_crashed("b", _crash(2))  # another crash: b's own so far
    assert not tracker.code_crashed("c", _crash(1))  # a's crash hits c too: alike
    assert not tracker.code_crashed("a", _crash(1))  # ...and is no longer counted for a
    assert tracker.worker_faults == 1 and tracker.pause_remaining() == 0.5
    now[0] = 0.2
    tracker.worker_fault()  # the same burst: no escalation
    assert tracker.worker_faults == 1
    now[0] = 1.0
    assert tracker.worker_fault() == 1.0 and tracker.worker_faults == 2
    tracker.succeeded()
    assert tracker.pause_remaining() == 0 and tracker.code_crashed("c", _crash(1))
