"""Security: AUTH (password, ACL user) and TLS work for workers, the client and the CLI; a worker
runs under the minimal ACL of docs/security.md, which confines it to its namespace.

Each test starts its own ``redis-server`` (its own pid, its own temporary directory). The TLS
test makes a throw-away CA and server certificate with the ``openssl`` command line and serves
TLS from a front in the test process (``rel_tls``), since the embedded binary has no TLS build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import rel_app
from rel_support import ROOT
from rel_tls import TlsFront

from durable_redis.client import Client
from durable_redis.devtools.server import RedisServer, resolve_redis_server
from durable_redis.errors import ConfigurationError, DurableRedisError
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

PASSWORD = "s3cret-Pa55"
WORKER_PASSWORD = "w0rker-Pa55"

# The minimal ACL of a worker (and of a client) for one namespace with one partition; see
# docs/security.md. Commands run inside scripts are checked against the caller's ACL too, so
# the Lua scripts' commands are listed as well.
WORKER_COMMANDS = (
    "+evalsha +script|load +ping +time +bzpopmin "
    "+hget +hgetall +hmget +hset +hsetnx +hdel +hexists +hincrby "
    "+exists +del +pexpire +incr +rpush +llen +lrange "
    "+sadd +srem +smembers +sismember +scard +sscan "
    "+zadd +zrem +zscore +zcard +zcount +zrange +zrangebyscore "
    "+spublish "
    "+zpopmin +incrby +hkeys +publish +subscribe +unsubscribe +multi +exec"  # jobs, schedules
)


def worker_acl(namespace: str, user: str = "dr-worker", password: str = WORKER_PASSWORD) -> str:
    return (
        f"ACL SETUSER {user} reset on >{password} "
        f"~dr:{{{namespace}}}:* ~dr:{{{namespace}:p0}}:* "
        f"resetchannels &dr:{{{namespace}:p0}}:* -@all {WORKER_COMMANDS}"
    )


@pytest.fixture
def redis_binary() -> str:
    return resolve_redis_server()  # none usable: a ConfigurationError that says what to do


def _require_password(server: RedisServer) -> None:
    """Set ``requirepass`` once the server is up (RedisServer's readiness PING has no AUTH)."""
    admin = redis.Redis(unix_socket_path=server.socket_path)
    try:
        admin.config_set("requirepass", PASSWORD)
    finally:
        admin.close()


def _cli(url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, with the URL (and its secret) in the environment, not in argv."""
    env = dict(os.environ, REDIS_URL=url, PYTHONPATH=f"{Path(__file__).parent}:{ROOT}")
    return subprocess.run(
        [sys.executable, "-m", "durable_redis.cli", *args, "--namespace", namespace, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(ROOT),
    )


async def _roundtrip(pools: Any, url: str, namespace: str, tag: str) -> str:
    """A worker process, the client and the CLI all work through ``url``."""
    pool = pools(url, namespace)
    worker = pool.start("rel_app:app")
    async with Client.from_url(url, namespace=namespace, app=rel_app.app) as client:
        iid = await client.start("echo", {"via": tag}, instance_id=f"{tag}-1")
        assert await client.wait_for_completion(iid, timeout=30) == {"via": tag}
    shown = _cli(url, namespace, "status", iid)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "completed"
    started = _cli(url, namespace, "start", "echo", "--input", '"cli"', "--wait", "30")
    assert started.returncode == 0, started.stderr
    assert "cli" in started.stdout
    worker.terminate()
    assert worker.wait(30) == 0
    return worker.log()


async def test_password_auth_for_worker_client_and_cli(
    pools: Any, redis_binary: str, namespace: str
) -> None:
    with RedisServer() as server:
        _require_password(server)
        url = f"unix://:{PASSWORD}@{server.socket_path}"
        await _roundtrip(pools, url, namespace, "password")
        # Without the password: refused, with a message that says so.
        wrong = _cli(f"unix://{server.socket_path}", namespace, "status", "x")
        assert wrong.returncode != 0
        assert "auth" in (wrong.stderr + wrong.stdout).lower()


async def test_worker_runs_under_the_minimal_acl(
    pools: Any, redis_binary: str, namespace: str
) -> None:
    with RedisServer() as server:
        admin = redis.Redis(unix_socket_path=server.socket_path)
        try:
            admin.execute_command(*worker_acl(namespace).split())
            url = f"unix://dr-worker:{WORKER_PASSWORD}@{server.socket_path}"
            log = await _roundtrip(pools, url, namespace, "acl")
            assert "CONFIG GET refused" in log  # the eviction check degrades to a warning
            assert "ACL failure in script" not in log  # every command the scripts run is listed

            # Confined to its namespace and its commands.
            user = redis.Redis(
                unix_socket_path=server.socket_path, username="dr-worker", password=WORKER_PASSWORD
            )
            other = RedisStore.from_url(url, namespace=f"{namespace}-other")
            try:
                with pytest.raises(ConfigurationError, match="ACL") as refused:
                    await other.initialize()
                assert isinstance(refused.value.__cause__, redis.exceptions.NoPermissionError)
            finally:
                await other.close()
            for command in (
                ("FLUSHALL",),
                ("KEYS", "*"),
                ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
                ("EVAL", "return 1", "0"),
                ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', function() end)"),
                ("GET", "some-other-app:key"),
                ("ACL", "SETUSER", "dr-worker", "+@all"),
            ):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    user.execute_command(*command)
            # A script it loads runs with its permissions: no key outside the namespace.
            sha = user.script_load("return redis.call('DEL', KEYS[1])")
            with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)no permissions|access"):
                user.evalsha(sha, 1, "some-other-app:key")
            user.close()
        finally:
            admin.close()


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:  # it comes with ca-certificates
        pytest.fail("the TLS test makes its certificates with the openssl command: install it")
    d = tmp_path / "tls"
    d.mkdir()

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext",
    )  # fmt: skip
    return d


async def test_tls_for_worker_client_and_cli(
    pools: Any, redis_binary: str, namespace: str, certificates: Path
) -> None:
    # Clients reach the server only through TLS on the front's port (rel_tls: the embedded
    # redis-server has no TLS build); the server itself listens on a unix socket.
    cert, key = certificates / "server.crt", certificates / "server.key"
    with RedisServer() as server, TlsFront(server.socket_path, cert, key) as tls:
        _require_password(server)
        port = tls.port
        url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={certificates / 'ca.crt'}"
        await _roundtrip(pools, url, namespace, "tls")
        # Verification is on: without the CA the connection is refused.
        unverified = RedisStore.from_url(f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", namespace)
        try:
            with pytest.raises((redis.exceptions.ConnectionError, DurableRedisError)) as info:
                await unverified.initialize()
            assert "certificate" in str(info.value).lower()
        finally:
            await unverified.close()


@pytest.mark.skipif(not Path("/proc").exists(), reason="not applicable: no /proc")
async def test_run_worker_keeps_the_password_out_of_child_argv(
    redis_binary: str, namespace: str, tmp_path: Path
) -> None:
    with RedisServer() as server:
        _require_password(server)
        url = f"unix://:{PASSWORD}@{server.socket_path}"
        script = (
            "import sys\n"
            "from durable_redis.runtime import WorkerOptions, run_worker\n"
            "opts = WorkerOptions(fetch_wait=0.5, janitor_interval=None, shutdown_grace_period=1)\n"
            f"sys.exit(run_worker('rel_app:app', sys.argv[1], opts, processes=2,"
            f" namespace={namespace!r}))\n"
        )
        env = dict(os.environ, PYTHONPATH=f"{Path(__file__).parent}:{ROOT}")
        parent = subprocess.Popen(
            [sys.executable, "-c", script, url],
            env=env,
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with Client.from_url(url, namespace=namespace, app=rel_app.app) as client:
                iid = await client.start("echo", "up")
                assert await client.wait_for_completion(iid, timeout=30) == "up"
            children = [
                int(p.name)
                for p in Path("/proc").iterdir()
                if p.name.isdigit() and _cmdline(p).count(namespace) and int(p.name) != parent.pid
            ]
            assert len(children) == 2, children
            for pid in children:
                assert PASSWORD not in _cmdline(Path(f"/proc/{pid}"))
        finally:
            if parent.poll() is None:
                parent.terminate()
                parent.wait(30)


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# The worker ACL with Redis Functions (docs/security.md): the library is loaded by an admin
# (`durable-redis functions load`), so the worker needs FCALL and nothing that runs given Lua.
FCALL_WORKER_COMMANDS = WORKER_COMMANDS.replace("+evalsha +script|load ", "+fcall ")


async def test_worker_runs_under_the_fcall_only_acl(
    pools: Any, redis_binary: str, namespace: str
) -> None:
    with RedisServer() as server:
        admin = redis.Redis(unix_socket_path=server.socket_path)
        try:
            loaded = _cli(f"unix://{server.socket_path}", namespace, "functions", "load")
            assert loaded.returncode == 0, loaded.stderr
            library = json.loads(loaded.stdout)["library"]
            acl = worker_acl(namespace).replace(WORKER_COMMANDS, FCALL_WORKER_COMMANDS)
            assert "evalsha" not in acl and "script" not in acl
            admin.execute_command(*acl.split())
            url = f"unix://dr-worker:{WORKER_PASSWORD}@{server.socket_path}?scripts=functions"
            await _roundtrip(pools, url, namespace, "fcall")
            stats = admin.info("commandstats")
            assert stats["cmdstat_fcall"]["calls"] > 0
            assert "cmdstat_evalsha" not in stats and "cmdstat_eval" not in stats

            user = redis.Redis(
                unix_socket_path=server.socket_path, username="dr-worker", password=WORKER_PASSWORD
            )
            for command in (
                ("EVAL", "return 1", "0"),
                ("EVALSHA", "0" * 40, "0"),
                ("SCRIPT", "LOAD", "return 1"),
                ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', function() end)"),
                ("FUNCTION", "DELETE", library),
                ("FUNCTION", "FLUSH"),
                ("FLUSHALL",),
            ):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    user.execute_command(*command)
            user.close()
            # The status command (admin) sees this version's library.
            shown = _cli(f"unix://{server.socket_path}", namespace, "functions", "status")
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["loaded"] is True
        finally:
            admin.close()


async def test_functions_required_but_not_loaded_is_a_typed_error(
    redis_binary: str, namespace: str
) -> None:
    from durable_redis.errors import FunctionsMissingError

    with RedisServer() as server:
        url = f"unix://{server.socket_path}"
        required = Client.from_url(f"{url}?scripts=functions", namespace=namespace)
        with pytest.raises(FunctionsMissingError, match="functions load"):
            async with required as client:
                await client.start("echo", 1, instance_id="x")
        # auto (the default) falls back to EVALSHA where the library is missing
        async with Client.from_url(url, namespace=namespace) as client:
            await client.start("echo", 1, instance_id="x")
        admin = redis.Redis(unix_socket_path=server.socket_path)
        try:
            assert admin.info("commandstats")["cmdstat_evalsha"]["calls"] > 0
        finally:
            admin.close()
