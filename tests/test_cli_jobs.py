"""``durable-redis enqueue / jobs / job status|cancel|retry`` against a real Redis and a real
``durable-redis worker tests.test_cli:app`` (the fixtures of ``test_cli``)."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.test_cli import Run, cli, cli_namespace, cli_worker  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def test_enqueue_wait_and_job_status(cli: Run) -> None:  # noqa: F811
    job_id = f"j-{uuid.uuid4().hex[:8]}"
    code, out, _ = cli(
        "enqueue", "shout", "--input", '[1, "a"]', "--id", job_id, "--wait", "20", "--json"
    )
    assert code == 0, out
    data = json.loads(out)
    assert data["job_id"] == job_id and data["state"] == "completed"
    assert data["result"] == {"echo": [1, "a"]}
    code, out, _ = cli("job", "status", job_id)
    assert code == 0
    assert re.search(r"^status\s+completed$", out, re.M), out
    code, out, _ = cli("jobs", "--status", "completed", "--json")
    assert job_id in [j["job_id"] for j in json.loads(out)]
    code, _, err = cli("job", "retry", job_id)
    assert code == 1 and "JobStateError" in err  # completed: nothing to retry


def test_delayed_job_cancel_and_retry(cli: Run) -> None:  # noqa: F811
    code, out, _ = cli("enqueue", "shout", "--input", "1", "--delay", "300", "--json")
    assert code == 0
    job_id = json.loads(out)["job_id"]
    code, out, _ = cli("jobs", "--status", "queued", "--name", "shout")
    assert job_id in out
    code, out, _ = cli("job", "cancel", job_id, "--json")
    assert code == 0 and json.loads(out) == {
        "job_id": job_id, "cancelled": True, "status_before": "queued"
    }  # fmt: skip
    code, out, _ = cli("job", "status", job_id, "--json")
    assert json.loads(out)["state"] == "cancelled"
    code, out, _ = cli("job", "retry", job_id)
    assert code == 0, out
    code, out, _ = cli("job", "status", job_id, "--json")
    assert json.loads(out)["state"] in ("queued", "running", "completed")


def test_unknown_job_and_bad_input(cli: Run) -> None:  # noqa: F811
    code, out, _ = cli("job", "status", "no-such-job")
    assert code == 1 and "no job" in out
    code, _, err = cli("enqueue", "shout", "--input", "{bad")
    assert code == 2 and "--input" in err
    code, _, err = cli("enqueue", "shout", "--at", "2030-01-01T00:00:00")
    assert code == 1 and "ValidationError" in err  # naive time: refused before writing
    code, _, err = cli("enqueue", "shout", "--delay", "-1")
    assert code == 1 and "ValidationError" in err


def test_schedules_commands(cli: Run, redis_url: str, cli_namespace: str) -> None:  # noqa: F811
    import anyio

    from durable_redis.client import Client

    async def create() -> None:
        async with Client.from_url(redis_url, namespace=cli_namespace) as client:
            await client.create_schedule(
                "nightly", "shout", "hi", cron="0 3 * * *", timezone="Europe/Paris"
            )
            await client.create_schedule("hourly", orchestration="echo", input="x", every=3600)

    anyio.run(create)
    code, out, _ = cli("schedules", "--json")
    assert code == 0
    [s] = [x for x in json.loads(out) if x["name"] == "nightly"]
    assert s["cron"] == "0 3 * * *" and s["timezone"] == "Europe/Paris" and not s["paused"]
    assert s["target"] == "activity"
    [o] = [x for x in json.loads(out) if x["name"] == "hourly"]
    assert (o["target"], o["orchestration"]) == ("orchestration", "echo")
    code, out, _ = cli("schedules")
    assert "nightly  activity shout" in out and "hourly  orchestration echo" in out
    code, out, _ = cli("schedules", "trigger", "hourly", "--json")
    assert code == 0 and json.loads(out)["instance_id"].startswith("hourly@now:")
    assert cli("schedules", "delete", "hourly")[0] == 0
    code, out, _ = cli("schedules", "pause", "nightly")
    assert code == 0 and "paused" in out
    code, out, _ = cli("schedules")
    assert "nightly" in out and "paused" in out
    code, out, _ = cli("schedules", "trigger", "nightly", "--json")
    job_id = json.loads(out)["job_id"]
    code, out, _ = cli("job", "status", job_id, "--json")
    assert code == 0 and json.loads(out)["name"] == "shout"
    code, out, _ = cli("schedules", "resume", "nightly")
    assert code == 0
    code, out, _ = cli("schedules", "delete", "nightly")
    assert code == 0
    code, out, _ = cli("schedules", "delete", "nightly")
    assert code == 1 and "no schedule" in out
    code, _, err = cli("schedules", "pause")
    assert code == 2 and "needs a schedule name" in err


def test_queues_commands_and_enqueue_to_a_queue(cli: Run) -> None:  # noqa: F811
    queue = f"q{uuid.uuid4().hex[:6]}"  # no worker serves it: its job stays queued
    code, out, _ = cli("enqueue", "shout", "--input", "1", "--queue", queue, "--json")
    assert code == 0, out
    job_id = json.loads(out)["job_id"]
    code, out, _ = cli("queues", "pause", queue, "--json")
    assert code == 0 and json.loads(out) == {"queue": queue, "paused": True, "was_paused": False}
    code, out, _ = cli("queues")
    assert re.search(
        rf"^{queue}  ready 1  delayed 0  activities ready 0  delayed 0  PAUSED$", out, re.M
    ), out
    code, out, _ = cli("queues", "resume", queue)
    assert code == 0 and out.strip() == f"queue {queue} resumed"
    code, out, _ = cli("queues", "list", "--json")
    [row] = [q for q in json.loads(out) if q["name"] == queue]
    assert row == {
        "name": queue,
        "ready": 1,
        "delayed": 0,
        "paused": False,
        "work_ready": 0,
        "work_delayed": 0,
        "running": 0,  # nothing leased: no worker serves this queue
    }
    code, out, _ = cli("job", "status", job_id, "--json")
    assert json.loads(out)["state"] == "queued"  # the worker serves "default" only
    code, _, err = cli("queues", "pause")
    assert code == 2 and "needs a queue name" in err
    code, _, err = cli("queues", "pause", "bad name")
    assert code == 1 and "InvalidIdError" in err
    code, _, err = cli("enqueue", "shout", "--queue", "a:b")
    assert code == 1 and "InvalidIdError" in err


def test_worker_queues_flag() -> None:
    from durable_redis._cli_commands import _worker_options
    from durable_redis._cli_support import UsageError
    from durable_redis.cli import _parser

    args = _parser().parse_args(["worker", "m:app", "--queues", "gpu, default"])
    assert _worker_options(args).queues == ("gpu", "default")
    args = _parser().parse_args(["worker", "m:app"])
    assert _worker_options(args).queues == ("default",)
    with pytest.raises(UsageError, match="queue name"):
        _worker_options(_parser().parse_args(["worker", "m:app", "--queues", "a b"]))
    with pytest.raises(UsageError, match="queues"):
        _worker_options(_parser().parse_args(["worker", "m:app", "--queues", ","]))


def test_enqueue_with_a_flow_key(cli: Run) -> None:  # noqa: F811
    key = f"cli-{uuid.uuid4().hex[:8]}"
    flags = ("--key", key, "--throttle", "60", "--delay", "300", "--json")
    code, out, _ = cli("enqueue", "shout", "--input", "1", *flags)
    assert code == 0, out
    first = json.loads(out)["job_id"]
    code, out, _ = cli("enqueue", "shout", "--input", "2", *flags)
    assert code == 0 and json.loads(out)["job_id"] == first  # throttled into the first
    code, out, _ = cli("job", "cancel", first, "--json")
    assert code == 0
    code, out, _ = cli(
        "enqueue", "shout", "--input", "3", "--key", f"{key}-b", "--concurrency", "2",
        "--wait", "20", "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["state"] == "completed", out
    code, _, err = cli("enqueue", "shout", "--concurrency", "2")
    assert code == 2 and "--key" in err
    code, _, err = cli("enqueue", "shout", "--key", "k", "--concurrency", "0")
    assert code == 1 and "ValidationError" in err
