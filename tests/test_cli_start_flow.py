"""``durable-redis start --key ...`` against a real Redis and a real worker (the fixtures of
``test_cli``): a singleton start returns the running instance, a throttled one the kept one;
bad combinations are usage or validation errors (docs/routing.md "Orchestration starts")."""

from __future__ import annotations

import json
import uuid

import pytest
from test_cli import Run, cli, cli_namespace, cli_worker, wait_until  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def test_singleton_and_throttled_starts(cli: Run) -> None:  # noqa: F811
    key = f"solo-{uuid.uuid4().hex[:6]}"
    flags = ("--key", key, "--concurrency", "1", "--json")
    code, out, _ = cli("start", "wait_for_go", *flags)
    assert code == 0, out
    first = json.loads(out)["instance_id"]
    wait_until(cli, first, lambda s: s["status"] == "running")
    code, out, _ = cli("start", "wait_for_go", *flags)
    assert code == 0 and json.loads(out)["instance_id"] == first  # the running one's id
    assert cli("raise-event", first, "go", "--data", "1")[0] == 0
    wait_until(cli, first, lambda s: s["status"] == "completed")
    code, out, _ = cli("start", "wait_for_go", *flags)
    assert code == 0 and json.loads(out)["instance_id"] != first  # it ended: a new one

    flags = ("--key", f"t-{uuid.uuid4().hex[:6]}", "--throttle", "60", "--json")
    ids = [json.loads(cli("start", "echo", "--input", str(i), *flags)[1]) for i in range(3)]
    assert len({i["instance_id"] for i in ids}) == 1


def test_bad_start_limits(cli: Run) -> None:  # noqa: F811
    code, _, err = cli("start", "echo", "--concurrency", "1")
    assert code == 2 and "--key" in err  # a usage error: nothing sent
    code, out, err = cli("start", "echo", "--key", "k", "--concurrency", "2")
    assert code == 1 and "concurrency=1" in out + err
    code, out, err = cli("start", "echo", "--key", "k", "--debounce", "1", "--throttle", "1")
    assert code == 1 and "debounce or throttle" in out + err
