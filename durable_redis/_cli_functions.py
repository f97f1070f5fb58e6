"""``durable-redis functions load|status``: the Lua scripts as a Redis Functions library.

``load`` (an admin credential: ``FUNCTION LOAD``) installs this version's library on the server,
or on every primary of a cluster; workers and clients then ``FCALL`` it (``scripts=auto``, the
default, or ``?scripts=functions`` in their URL to require it) and need no
``EVAL``/``EVALSHA``/``SCRIPT`` in their ACL (docs/security.md). ``--prune`` deletes the
libraries of older durable_redis versions once no worker runs them. ``status`` says which
libraries each primary has.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["FUNCTIONS_COMMANDS", "add_functions_command", "run_functions_command"]

FUNCTIONS_COMMANDS = ("functions",)


def add_functions_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("functions", "load the scripts as a Redis Functions library (admin; Redis 7+)")
    p.add_argument("action", choices=("load", "status"), help="load: FUNCTION LOAD REPLACE")
    p.add_argument(
        "--prune", action="store_true", help="with load: delete older durable_redis libraries"
    )


async def run_functions_command(args: argparse.Namespace, url: str, emit: Any) -> int:
    from durable_redis.storage import RedisStore
    from durable_redis.storage.functions import library_name, load_library, loaded_libraries

    store = RedisStore.from_url(url, namespace=args.namespace)
    client = store._r  # the connection only: the library is server-wide, not per namespace
    try:
        if args.action == "load":
            report = await load_library(client, prune=args.prune)
            pruned = f"; deleted {', '.join(report.pruned)}" if report.pruned else ""
            emit(
                args,
                {"library": report.library, "nodes": list(report.nodes), "pruned": report.pruned},
                f"loaded {report.library} on {len(report.nodes)} primary(ies){pruned}",
            )
            return 0
        found = await loaded_libraries(client)
        current = library_name()
        rows = {node: sorted(names) for node, names in found.items()}
        ok = all(current in names for names in found.values())
        lines = [f"this version: {current} ({'loaded' if ok else 'NOT loaded everywhere'})"]
        lines += [f"{node}: {', '.join(names) or '-'}" for node, names in rows.items()]
        emit(args, {"library": current, "loaded": ok, "nodes": rows}, "\n".join(lines))
        return 0 if ok else 1
    finally:
        await store.close()
