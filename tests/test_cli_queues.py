"""``durable-redis queues drain`` against a real Redis and a real worker (the fixtures of
``test_cli``): it pauses the queue and reports its in-flight work; queued work stays."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from test_cli import Run, cli, cli_namespace, cli_worker  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def test_queues_drain(cli: Run) -> None:  # noqa: F811
    code, out, _ = cli("enqueue", "shout", "--input", "0", "--wait", "20")  # the worker is up
    assert code == 0, out
    queue = f"q{uuid.uuid4().hex[:6]}"  # no worker serves it: nothing runs, its job stays
    code, out, _ = cli("enqueue", "shout", "--input", "1", "--queue", queue, "--json")
    assert code == 0, out
    job_id = json.loads(out)["job_id"]
    code, out, _ = cli("queues", "drain", queue, "--wait", "--timeout", "10", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["name"] == queue and data["paused"] is True and data["running"] == 0
    code, out, _ = cli("queues", "drain", queue)
    assert code == 0 and out.strip().startswith(f"queue {queue} paused, drained"), out
    code, out, _ = cli("queues", "status", queue)
    assert code == 0 and re.fullmatch(
        rf"{queue}  jobs running 0  activities running 0  ready 0  delayed 0  PAUSED", out.strip()
    ), out
    code, out, _ = cli("queues")
    assert re.search(
        rf"^{queue}  ready 1  delayed 0  activities ready 0  delayed 0  PAUSED$", out, re.M
    ), out
    code, out, _ = cli("job", "status", job_id, "--json")
    assert json.loads(out)["state"] == "queued"  # nothing lost
    code, out, _ = cli("queues", "resume", queue)
    assert code == 0 and out.strip() == f"queue {queue} resumed"
    code, _, err = cli("queues", "drain")
    assert code == 2 and "needs a queue name" in err
