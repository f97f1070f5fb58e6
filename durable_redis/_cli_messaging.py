"""The CLI commands that talk to running orchestrations (docs/messaging.md): ``update``,
``get-value``, ``stream``, ``enqueue-event``. Called from ``_cli_commands.run_client_command``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from durable_redis._cli_support import EXIT_OK, existing_instance
from durable_redis._render import plain

__all__ = ["MESSAGING_COMMANDS", "add_messaging_commands", "run_messaging_command"]

MESSAGING_COMMANDS = ("update", "get-value", "stream", "enqueue-event")

Emit = Callable[[argparse.Namespace, Any, str], None]


def add_messaging_commands(
    command: Callable[[str, str], argparse.ArgumentParser], json_arg: str, duration: Any
) -> None:
    """Add the commands through cli.py's ``command()`` helper."""
    p = command("update", "send an update to a running instance and print the handler's answer")
    p.add_argument("instance_id")
    p.add_argument("name", help="update handler name")
    p.add_argument("--input", default=None, help=f"the update's argument as {json_arg}")
    p.add_argument("--update-id", default=None, help="retry-safe id: applied once per id")
    duration(p, "--timeout", "give up waiting for the answer after this long (default: 60s)")

    p = command("get-value", "read an instance's key-value state (one key, or all)")
    p.add_argument("instance_id")
    p.add_argument("key", nargs="?", default=None)

    p = command("stream", "print an instance's progress stream")
    p.add_argument("instance_id")
    p.add_argument("--from", dest="from_offset", default="0", help="after this offset")
    p.add_argument("--follow", action="store_true", help="wait for new items until it ends")

    p = command("enqueue-event", "add an event to an instance's FIFO queue (ctx.dequeue_event)")
    p.add_argument("instance_id")
    p.add_argument("queue")
    p.add_argument("--data", default=None, help=f"event data as {json_arg}")


async def run_messaging_command(
    client: Any, args: argparse.Namespace, emit: Emit, values: dict[str, Any]
) -> int:

    command = args.command
    if command == "update":
        result = await client.update(
            args.instance_id,
            args.name,
            values.get("input"),
            update_id=args.update_id,
            timeout=args.timeout if args.timeout is not None else 60.0,
        )
        emit(args, {"instance_id": args.instance_id, "update": args.name, "result": result},
             json.dumps(plain(result), ensure_ascii=False))  # fmt: skip
        return EXIT_OK
    if command == "get-value":
        await existing_instance(client, args.instance_id)
        if args.key is None:
            found = await client.get_values(args.instance_id)
            lines = [f"{k} = {json.dumps(plain(v), ensure_ascii=False)}" for k, v in found.items()]
            emit(args, found, "\n".join(lines) or "(no values)")
        else:
            missing = object()
            value = await client.get_value(args.instance_id, args.key, missing)
            if value is missing:
                emit(args, {args.key: None, "set": False}, f"{args.key} is not set")
            else:
                emit(args, {args.key: value, "set": True}, json.dumps(plain(value)))
        return EXIT_OK
    if command == "stream":
        await existing_instance(client, args.instance_id)
        async for item in client.stream(
            args.instance_id, from_offset=args.from_offset, follow=args.follow
        ):
            value = json.dumps(plain(item.value), ensure_ascii=False, sort_keys=True)
            if args.json:
                doc = {"offset": item.offset, "value": plain(item.value)}
                print(json.dumps(doc, ensure_ascii=False, sort_keys=True), flush=True)
            else:
                print(f"{item.offset} {value}", flush=True)
        return EXIT_OK
    data = values.get("data")
    await client.enqueue_event(args.instance_id, args.queue, data)
    emit(args, {"instance_id": args.instance_id, "queue": args.queue, "data": data},
         f"event added to queue {args.queue!r} of {args.instance_id}")  # fmt: skip
    return EXIT_OK
