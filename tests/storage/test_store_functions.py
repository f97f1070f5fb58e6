"""Redis Functions: the scripts as one library (``FUNCTION LOAD`` on every primary), a store
in ``scripts="auto"`` calls ``FCALL`` while the library is there and EVALSHA where it is not,
``scripts="functions"`` refuses to run without it. On one server, fakeredis and (``--cluster
-m cluster``) a 3-primary Redis Cluster."""

from __future__ import annotations

from typing import Any

import pytest
from store_support import fetch, start, turn

from durable_redis.errors import ConfigurationError, FunctionsMissingError
from durable_redis.storage import RedisStore
from durable_redis.storage.base import InstanceStatus
from durable_redis.storage.functions import (
    delete_library,
    function_name,
    library_name,
    library_source,
    load_library,
    loaded_libraries,
)

pytestmark = pytest.mark.anyio


async def _fcalls(store: RedisStore) -> int | None:
    """FCALLs the server ran (None where INFO does not say: fakeredis, a cluster)."""
    if store.backend != "redis":  # type: ignore[attr-defined]
        return None
    stats = await store._r.info("commandstats")
    return int(stats.get("cmdstat_fcall", {}).get("calls", 0))


async def test_fcall_while_the_library_is_loaded_evalsha_after_it_is_gone(
    store: RedisStore,
) -> None:
    report = await load_library(store._r)
    try:
        assert report.library == library_name()
        loaded = await loaded_libraries(store._r)
        assert loaded and all(library_name() in names for names in loaded.values())
        if store.backend == "cluster":  # type: ignore[attr-defined]
            assert len(report.nodes) == 3  # every primary

        fcall = await store.twin()  # type: ignore[attr-defined]
        before = await _fcalls(store)
        await start(fcall, "f1")
        lease = await fetch(fcall)
        await fcall.commit_turn(lease, turn(lease, status=InstanceStatus.COMPLETED))
        info = await fcall.get_instance("f1")
        assert info is not None and info.status is InstanceStatus.COMPLETED
        assert fcall._fcall, "the store fell back to EVALSHA with the library loaded"
        after = await _fcalls(store)
        if before is not None and after is not None:
            assert after - before >= 3  # create, claim + lock, commit
    finally:
        assert await delete_library(store._r) >= 1

    # the library is gone (a FUNCTION FLUSH, a server without it): auto falls back for good
    await start(fcall, "f2")
    assert not fcall._fcall
    lease = await fetch(fcall)
    assert lease.instance_id == "f2"


async def test_scripts_functions_without_the_library_is_a_typed_error(store: RedisStore) -> None:
    strict = RedisStore(store._r, namespace=store.namespace, scripts="functions")
    await strict.initialize()
    with pytest.raises(FunctionsMissingError, match="functions load"):
        await start(strict, "nope")
    assert await store.get_instance("nope") is None  # nothing written
    with pytest.raises(ConfigurationError):
        RedisStore(store._r, namespace=store.namespace, scripts="lua")


def test_the_library_is_versioned_by_the_script_text() -> None:
    source = library_source()
    assert source.startswith(f"#!lua name={library_name()}\n")
    assert f"redis.register_function('{function_name('commit_turn')}'" in source
    assert library_name().removeprefix("durable_redis_") in function_name("commit_turn")


async def test_the_url_carries_the_script_mode(redis_url: str) -> None:
    store: Any = RedisStore.from_url(f"{redis_url}?scripts=eval", namespace="x")
    try:
        assert (store.scripts, store._fcall) == ("eval", False)
    finally:
        await store.close()


async def test_prune_deletes_older_versions_only(store: RedisStore) -> None:
    old = "durable_redis_000000000000"
    source = f"#!lua name={old}\nredis.register_function('dr_000000000000_x', function() end)"
    from durable_redis.storage.functions import _on, _primaries

    for _node, target in await _primaries(store._r):
        await _on(store._r, target, "FUNCTION", "LOAD", "REPLACE", source)
    try:
        report = await load_library(store._r, prune=True)
        assert report.pruned == (old,)
        for names in (await loaded_libraries(store._r)).values():
            assert names == {library_name()}
    finally:
        await delete_library(store._r)
        await delete_library(store._r, old)


@pytest.mark.cluster
def test_the_cli_loads_the_library_on_every_primary(
    redis_cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import redis

    from durable_redis.cli import main

    url = redis_cluster.url
    assert main(["functions", "load", "--redis-url", url, "--json"]) == 0
    loaded = json.loads(capsys.readouterr().out)
    try:
        assert loaded["library"] == library_name() and len(loaded["nodes"]) == 3
        assert main(["functions", "status", "--redis-url", url, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["loaded"] is True and len(status["nodes"]) == 3
    finally:
        sync = redis.RedisCluster.from_url(url.replace("redis+cluster://", "redis://"))
        try:
            sync.execute_command(
                "FUNCTION", "DELETE", library_name(), target_nodes=redis.RedisCluster.PRIMARIES
            )
        finally:
            sync.close()
    assert main(["functions", "status", "--redis-url", url, "--json"]) == 1
