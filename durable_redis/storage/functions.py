"""The Lua scripts as one Redis Functions library (``FUNCTION LOAD``, then ``FCALL``).

An admin loads the library once (``durable-redis functions load``; on a cluster on every
primary); workers and clients then call ``FCALL`` and need neither ``EVAL``/``EVALSHA`` nor
``SCRIPT`` in their ACL (docs/security.md). Functions are part of the dataset: persisted in
RDB/AOF and replicated, so unlike the script cache they survive a restart or a failover.

The library's name carries a digest of every script's text (``durable_redis_<12 hex>``), and so
does every function's (``dr_<12 hex>_<script>``): code and library match exactly or not at all.
An upgrade loads the new library beside the old one (old workers keep calling theirs) and
``functions load --prune`` removes the libraries of older versions once no worker runs them.

Each script becomes one function whose body is the script itself with ``KEYS``/``ARGV`` as the
function's parameters, so the two paths run the same Lua.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from durable_redis.errors import StoreError
from durable_redis.storage._replies import _s
from durable_redis.storage.scripts import SCRIPTS, load_script_source

__all__ = [
    "LIBRARY_PREFIX",
    "SCRIPT_MODES",
    "FunctionsReport",
    "delete_library",
    "function_name",
    "library_name",
    "library_source",
    "library_version",
    "load_library",
    "loaded_libraries",
]

LIBRARY_PREFIX = "durable_redis_"
SCRIPT_MODES = ("auto", "functions", "eval")


@cache
def library_version() -> str:
    """12 hex digits of a digest over every script's name and text."""
    h = hashlib.sha256()
    for name in sorted(SCRIPTS):
        h.update(name.encode() + b"\0" + load_script_source(name).encode() + b"\0")
    return h.hexdigest()[:12]


def library_name() -> str:
    return f"{LIBRARY_PREFIX}{library_version()}"


def function_name(script: str) -> str:
    return f"dr_{library_version()}_{script}"


@cache
def library_source() -> str:
    """The ``FUNCTION LOAD`` text: one function per script."""
    parts = [f"#!lua name={library_name()}\n"]
    for name in sorted(SCRIPTS):
        parts.append(
            f"local function {name}(KEYS, ARGV)\n{load_script_source(name)}\nend\n"
            f"redis.register_function('{function_name(name)}', {name})\n"
        )
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class FunctionsReport:
    """What ``load_library`` did, per primary (``host:port``; ``local`` for one server)."""

    library: str
    nodes: tuple[str, ...]
    pruned: tuple[str, ...]  # old durable_redis libraries deleted (``prune=True``)


async def _primaries(client: Any) -> list[tuple[str, Any]]:
    """(name, target) per primary: the client itself for one server, nodes on a cluster."""
    from redis.asyncio.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        await client.initialize()  # a fresh client knows no node yet
        nodes = [(f"{n.host}:{n.port}", n) for n in client.get_primaries()]
        if not nodes:
            raise StoreError("the cluster reports no primary")
        return nodes
    return [("local", None)]


async def _on(client: Any, target: Any, *command: Any) -> Any:
    if target is None:
        return await client.execute_command(*command)
    return await client.execute_command(*command, target_nodes=target)


async def loaded_libraries(client: Any) -> dict[str, set[str]]:
    """Library names with our prefix, per primary."""
    found: dict[str, set[str]] = {}
    for node, target in await _primaries(client):
        reply = await _on(client, target, "FUNCTION", "LIST", "LIBRARYNAME", f"{LIBRARY_PREFIX}*")
        names = set()
        for lib in reply or []:
            fields = dict(zip(lib[::2], lib[1::2], strict=True)) if isinstance(lib, list) else lib
            name = _s(fields.get(b"library_name", fields.get("library_name", b"")))
            if name.startswith(LIBRARY_PREFIX):
                names.add(name)
        found[node] = names
    return found


async def load_library(client: Any, *, prune: bool = False) -> FunctionsReport:
    """``FUNCTION LOAD REPLACE`` the library on every primary; ``prune`` deletes the other
    durable_redis libraries (older versions) after it."""
    source = library_source()
    nodes = []
    for node, target in await _primaries(client):
        await _on(client, target, "FUNCTION", "LOAD", "REPLACE", source)
        nodes.append(node)
    pruned: set[str] = set()
    if prune:
        for node, names in (await loaded_libraries(client)).items():
            target = dict(await _primaries(client))[node]
            for name in sorted(names - {library_name()}):
                await _on(client, target, "FUNCTION", "DELETE", name)
                pruned.add(name)
    return FunctionsReport(library_name(), tuple(nodes), tuple(sorted(pruned)))


async def delete_library(client: Any, name: str | None = None) -> int:
    """``FUNCTION DELETE`` this version's library (or ``name``) on every primary that has it;
    the count of primaries it was deleted from."""
    name = name or library_name()
    deleted = 0
    for node, names in (await loaded_libraries(client)).items():
        if name in names:
            await _on(client, dict(await _primaries(client))[node], "FUNCTION", "DELETE", name)
            deleted += 1
    return deleted
