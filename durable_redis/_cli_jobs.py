"""The job commands of ``durable-redis``: ``enqueue``, ``jobs``, ``job status|cancel|retry``,
``schedules [list|pause|resume|trigger|delete] [NAME]``,
``queues [list|status|pause|resume|drain] [NAME] [--wait] [--timeout S]``.

Registered by ``cli.py`` with :func:`add_job_commands`; run with :func:`run_job_command`.
Exit codes: 0 ok, 1 the job failed / was cancelled / is unknown, 3 ``--wait`` timed out.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from typing import Any

from durable_redis._cli_support import UsageError, add_limit_options, limit_from_args, read_json_arg
from durable_redis._render import plain, show
from durable_redis.errors import (
    JobError,
    JobNotFoundError,
    ScheduleNotFoundError,
    WaitTimeoutError,
)
from durable_redis.storage.job_types import JobState

__all__ = ["JOB_COMMANDS", "add_job_commands", "run_job_command"]

JOB_COMMANDS = frozenset({"enqueue", "jobs", "job", "schedules", "queues"})
Emit = Callable[[argparse.Namespace, Any, str], None]


def add_job_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Add the job commands with ``command(name, help)``, the CLI's subcommand factory (the
    common options, the help, the exit codes)."""
    p = command("enqueue", "enqueue an activity as a job")
    p.add_argument("name", help="activity name")
    p.add_argument("--input", default=None, help="input as JSON")
    p.add_argument("--id", dest="job_id", default=None, help="job id (dedupes)")
    p.add_argument("--delay", type=float, default=None, metavar="SECONDS", help="run later")
    p.add_argument("--at", default=None, metavar="ISO8601", help="run at (timezone-aware)")
    p.add_argument("--priority", type=int, default=0, help="higher runs first")
    p.add_argument("--queue", default=None, help="job queue (default: the activity's)")
    p.add_argument("--result-ttl", type=float, default=None, metavar="SECONDS")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS", help="wait for result")
    add_limit_options(p, rates=True)

    p = command("jobs", "list jobs")
    p.add_argument("--status", default=None, choices=[s.value for s in JobState])
    p.add_argument("--name", default=None)
    p.add_argument("--limit", type=int, default=50)

    p = command("job", "show, cancel or retry one job")
    p.add_argument("action", choices=["status", "cancel", "retry"])
    p.add_argument("job_id")
    p.add_argument("--reason", default="cancelled from the command line")

    p = command("schedules", "list or control schedules")
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "pause", "resume", "trigger", "delete"],
    )
    p.add_argument("name", nargs="?", default=None, help="the schedule (all but list)")

    p = command("queues", "list, pause, resume or drain queues (jobs and activities)")
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "status", "pause", "resume", "drain"],
    )
    p.add_argument("name", nargs="?", default=None, help="the queue (all but list)")
    p.add_argument("--wait", action="store_true", help="drain: wait until nothing runs")
    p.add_argument("--timeout", type=float, default=None, help="drain --wait: give up after")


async def _queues(client: Any, args: argparse.Namespace, emit: Emit) -> int:
    if args.action == "list":
        found = await client.list_queues()
        rows = [
            f"{q.name}  ready {q.ready}  delayed {q.delayed}"
            f"  activities ready {q.work_ready}  delayed {q.work_delayed}"
            + ("  PAUSED" if q.paused else "")
            for q in found
        ]
        emit(args, [plain(q) for q in found], "\n".join(rows))
        return 0
    if not args.name:
        raise UsageError(f"queues {args.action} needs a queue name")
    if args.action == "drain":
        return await _drain(client, args, emit)
    if args.action == "status":
        status = await client.queue_status(args.name)
        emit(args, {**plain(status), "running": status.running}, _status_text(status))
        return 0
    if args.action == "pause":
        was = await client.pause_queue(args.name)
        text = f"queue {args.name} " + ("was paused already" if was else "paused")
        emit(args, {"queue": args.name, "paused": True, "was_paused": was}, text)
        return 0
    was = await client.resume_queue(args.name)
    text = f"queue {args.name} " + ("resumed" if was else "was not paused")
    emit(args, {"queue": args.name, "paused": False, "was_paused": was}, text)
    return 0


async def _drain(client: Any, args: argparse.Namespace, emit: Emit) -> int:
    """Pause the queue, then report (or with --wait await) its in-flight work; exit 1 when
    --timeout ran out with work still running (the queue stays paused)."""
    try:
        status = await client.drain_queue(args.name, wait=args.wait, timeout=args.timeout)
        code = 0
    except TimeoutError:
        status, code = await client.queue_status(args.name), 1
    state = "drained" if status.running == 0 else f"draining, {status.running} running"
    text = f"queue {args.name} paused, {state} ({_status_text(status)})"
    emit(args, {**plain(status), "running": status.running}, text)
    return code


def _status_text(status: Any) -> str:
    paused = "  PAUSED" if status.paused else ""
    return (
        f"{status.name}  jobs running {status.jobs_running}  activities running "
        f"{status.work_running}  ready {status.work_ready}  delayed {status.work_delayed}{paused}"
    )


def _schedule_text(s: Any) -> str:
    when = s.cron if s.cron is not None else f"every {s.every.total_seconds():g}s"
    nxt = "paused" if s.paused else f"next {plain(s.next_run_at)}"
    what = f"orchestration {s.orchestration}" if s.orchestration else f"activity {s.activity}"
    last = "last instance" if s.orchestration else "last job"
    return f"{s.name}  {what}  {when} ({s.timezone})  {nxt}  {last} {s.last_job_id or '-'}"


async def _schedules(client: Any, args: argparse.Namespace, emit: Emit) -> int:
    if args.action == "list":
        found = await client.list_schedules()
        emit(args, [plain(s) for s in found], "\n".join(map(_schedule_text, found)) or "(none)")
        return 0
    if not args.name:
        raise UsageError(f"schedules {args.action} needs a schedule name")
    try:
        if args.action == "trigger":
            run = await client.trigger_schedule(args.name)
            if isinstance(run, str):  # an orchestration schedule: the started instance's id
                emit(args, {"schedule": args.name, "instance_id": run}, f"started {run}")
            else:
                emit(args, {"schedule": args.name, "job_id": run.id}, f"enqueued {run.id}")
            return 0
        action = {
            "pause": client.pause_schedule,
            "resume": client.resume_schedule,
            "delete": client.delete_schedule,
        }[args.action]
        await action(args.name)
    except ScheduleNotFoundError:
        emit(args, None, f"no schedule {args.name!r}")
        return 1
    done = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[args.action]
    emit(args, {"schedule": args.name, done: True}, f"schedule {args.name} {done}")
    return 0


def job_dict(status: Any) -> dict[str, Any]:
    data: dict[str, Any] = plain(status)
    return data


def job_text(s: Any) -> str:
    lines = [
        f"job        {s.job_id}",
        f"activity   {s.name}",
        f"status     {s.state.value}",
        f"attempt    {s.attempt} (deliveries {s.deliveries})",
        f"progress   {show(s.progress)}",
        f"created    {plain(s.created_at)}",
        f"started    {plain(s.started_at) or '-'}",
        f"finished   {plain(s.finished_at) or '-'}",
        f"worker     {s.worker_id or '-'}",
    ]
    if s.error is not None:
        lines.append(f"error      {s.error.type_name}: {s.error.message}")
    return "\n".join(lines)


def _at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {text!r} is not an ISO 8601 time") from None


async def run_job_command(args: argparse.Namespace, url: str, emit: Emit) -> int:
    from durable_redis.client import Client

    async with Client.from_url(url, namespace=args.namespace) as client:
        if args.command == "enqueue":
            return await _enqueue(client, args, emit)
        if args.command == "schedules":
            return await _schedules(client, args, emit)
        if args.command == "queues":
            return await _queues(client, args, emit)
        if args.command == "jobs":
            found = await client.list_jobs(status=args.status, name=args.name, limit=args.limit)
            rows = [
                f"{s.job_id}  {s.state.value:<9}  {s.name}  attempt {s.attempt}  "
                f"progress {show(s.progress)}"
                for s in found
            ]
            emit(args, [job_dict(s) for s in found], "\n".join(rows) or "(no jobs)")
            return 0
        try:
            if args.action == "status":
                job = await client.get_job(args.job_id)
                status = await job.status()
                emit(args, job_dict(status), job_text(status))
                return 0
            if args.action == "cancel":
                before = await client.cancel_job(args.job_id, args.reason)
                done = not before.is_terminal
                emit(
                    args,
                    {"job_id": args.job_id, "cancelled": done, "status_before": before.value},
                    f"job {args.job_id} cancelled"
                    if done
                    else f"job {args.job_id} was {before.value} already: left as it is",
                )
                return 0
            await client.retry_job(args.job_id)
            emit(args, {"job_id": args.job_id, "queued": True}, f"job {args.job_id} queued again")
            return 0
        except JobNotFoundError:
            emit(args, None, f"no job {args.job_id!r}")
            return 1


async def _enqueue(client: Any, args: argparse.Namespace, emit: Emit) -> int:
    options: dict[str, Any] = {
        "job_id": args.job_id,
        "delay": args.delay,
        "at": _at(args.at),
        "priority": args.priority,
        "queue": args.queue,
    }
    if args.result_ttl is not None:
        options["result_ttl"] = args.result_ttl
    options["limit"] = limit_from_args(args)
    job = await client.enqueue(args.name, read_json_arg(args.input, "--input"), **options)
    if args.wait is None:
        emit(args, {"job_id": job.id, "name": args.name}, f"enqueued {args.name} as {job.id}")
        return 0
    code = 0
    try:
        result = await job.result(timeout=args.wait)
        extra: dict[str, Any] = {"result": result}
    except WaitTimeoutError:
        extra, code = {"timed_out": True}, 3
    except JobError as exc:
        extra, code = {"error": str(exc)}, 1
    status = await job.status()
    data = {**job_dict(status), **plain(extra)}
    tail = f"result     {show(extra['result'])}" if "result" in extra else ""
    if code == 3:
        tail = f"still {status.state.value} after {args.wait:g}s"
    emit(args, data, f"enqueued {args.name} as {job.id}\n{job_text(status)}\n{tail}".rstrip())
    return code
