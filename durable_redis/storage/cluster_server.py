"""``LocalCluster``: a private Redis Cluster (N primaries, optional replicas) for tests and benches.

Every node is a ``redis-server --cluster-enabled yes`` child process on a free loopback port, in
one temporary directory; ``redis-cli --cluster create`` joins them. ``stop()`` stops each node by
its own pid. Used by the cluster test fixtures and ``benchmarks/cluster_bench.py``::

    with LocalCluster(primaries=3) as cluster:
        store = RedisStore.from_url(cluster.url, partitions=8)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

from durable_redis.errors import ConfigurationError
from durable_redis.storage.server import RedisServer, find_redis_server

__all__ = ["LocalCluster", "find_redis_cli"]


def find_redis_cli() -> str | None:
    return shutil.which("redis-cli")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports whose cluster-bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535 or port in ports:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        ports.append(port)
    return ports


class LocalCluster:
    """``primaries`` primaries with ``replicas`` replicas each, on loopback, in a temp dir."""

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
        persistence: bool = False,
        startup_timeout_s: float = 30.0,
    ) -> None:
        if find_redis_server() is None or find_redis_cli() is None:
            raise ConfigurationError("a Redis Cluster needs redis-server and redis-cli on PATH")
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.persistence = persistence
        self.startup_timeout_s = startup_timeout_s
        self.directory: str | None = None
        self.nodes: list[RedisServer] = []

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL of the first node (the client discovers the others)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> LocalCluster:
        if self.nodes:
            return self
        self.directory = tempfile.mkdtemp(prefix="durable-redis-cluster-")
        count = self.primaries * (1 + self.replicas)
        for attempt in range(3):
            ports = _free_ports(count)
            try:
                self._start_nodes(ports)
                break
            except ConfigurationError:
                self._stop_nodes()
                if attempt == 2:
                    raise
        self._create()
        return self

    def _start_nodes(self, ports: list[int]) -> None:
        assert self.directory is not None
        for port in ports:
            node_dir = f"{self.directory}/{port}"
            os.makedirs(node_dir, exist_ok=True)
            node = RedisServer(
                unix_socket=False,
                persistence=self.persistence,
                directory=node_dir,
                port=port,
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"{node_dir}/nodes.conf",
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                ),
            )
            self.nodes.append(node)
            node.start()

    def _create(self) -> None:
        cli = find_redis_cli()
        assert cli is not None
        if len(self.nodes) == 1:  # redis-cli wants >= 3 primaries: one node takes every slot
            out = self.cli(self.ports[0], "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
            if "OK" not in out:
                self.stop()
                raise ConfigurationError(f"CLUSTER ADDSLOTSRANGE failed: {out}")
        else:
            args = [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports]]
            args += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            done = subprocess.run(args, capture_output=True, timeout=60, check=False)
            if done.returncode != 0:
                self.stop()
                output = (done.stdout + done.stderr).decode(errors="replace")
                raise ConfigurationError(f"redis-cli --cluster create failed: {output[-2000:]}")
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if all(self.cluster_ok(n.port) for n in self.nodes):
                return
            time.sleep(0.1)
        self.stop()
        raise ConfigurationError("the local cluster did not reach cluster_state:ok in time")

    def cli(self, port: int, *command: str, timeout: float = 10.0) -> str:
        cli = find_redis_cli()
        assert cli is not None
        done = subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(port), *command],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return done.stdout.decode(errors="replace")

    def cluster_ok(self, port: int) -> bool:
        info = self.cli(port, "CLUSTER", "INFO")
        return "cluster_state:ok" in info and "cluster_slots_ok:16384" in info

    def role(self, port: int) -> str:
        out = self.cli(port, "ROLE").split()
        return out[0] if out else ""

    def node_for(self, pid: int) -> RedisServer | None:
        return next((n for n in self.nodes if n.pid == pid), None)

    def _stop_nodes(self) -> None:
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            node.stop()

    def stop(self) -> None:
        self._stop_nodes()
        if self.directory:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.directory)
            self.directory = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
