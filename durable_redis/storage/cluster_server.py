"""``LocalCluster``: a private Redis Cluster (N primaries, optional replicas) for tests and benches.

Every node is a ``redis-server --cluster-enabled yes`` child process on a free loopback port, in
one temporary directory; ``redis-cli --cluster create`` joins them. ``stop()`` stops each node by
its own pid. Used by the cluster test fixtures and ``benchmarks/cluster_bench.py``::

    with LocalCluster(primaries=3) as cluster:
        store = RedisStore.from_url(cluster.url, partitions=8)

With replicas, ``start()`` returns only once every replica's link to its primary is up and its
initial sync is done (``repl-diskless-sync-delay`` is 0 here: Redis's default of 5 s would leave a
fresh replica unsynced for 5 s). ``failover(replica)`` is a manual ``CLUSTER FAILOVER`` that waits
for the conditions it needs first and confirms the promotion from the replica itself.
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
                    # without persistence a replica syncs diskless; Redis waits 5 s by default
                    # for more replicas before starting that transfer: start it at once.
                    "--repl-diskless-sync-delay",
                    "0",
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
            if (
                all(self.cluster_ok(n.port) for n in self.nodes)
                and sum(self.replica_synced(p) for p in self.ports)
                == self.primaries * self.replicas
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise ConfigurationError(
            "the local cluster did not reach cluster_state:ok (and replicas synced) in time"
        )

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

    def info(self, port: int, section: str = "replication") -> dict[str, str]:
        """``INFO <section>`` of one node as a dict."""
        out = self.cli(port, "INFO", section)
        return dict(
            line.strip().split(":", 1)
            for line in out.splitlines()
            if ":" in line and line[0] != "#"
        )

    def replica_synced(self, port: int) -> bool:
        """A replica whose link to its primary is up and whose initial sync is done."""
        info = self.info(port)
        return (
            info.get("role") == "slave"
            and info.get("master_link_status") == "up"
            and info.get("master_sync_in_progress") == "0"
        )

    def _node_lines(self, port: int) -> list[list[str]]:
        return [line.split() for line in self.cli(port, "CLUSTER", "NODES").splitlines() if line]

    def node_id(self, port: int) -> str:
        """The node id of the node on ``port``, from its own ``CLUSTER NODES``."""
        mine = next((f for f in self._node_lines(port) if "myself" in f[2]), None)
        return mine[0] if mine else ""

    def primary_of(self, replica: int) -> int | None:
        """Port of the primary ``replica`` replicates, from the replica's own view."""
        lines = self._node_lines(replica)
        mine = next((f for f in lines if "myself" in f[2]), None)
        if mine is None or "slave" not in mine[2]:
            return None
        for port in self.ports:
            if self.node_id(port) == mine[3]:
                return port
        return None

    def failover_blocker(self, replica: int) -> str | None:
        """Why a manual ``CLUSTER FAILOVER`` on ``replica`` could not succeed now, or ``None``.

        The replica must be synced (a manual failover waits for the replica to reach the
        primary's offset: with the link down it times out after 5 s and is silently dropped),
        every node must see ``cluster_state:ok``, and every primary must know ``replica`` as a
        replica of its primary (a primary only votes for a known replica of that primary).
        """
        primary = self.primary_of(replica)
        if primary is None:
            return f"{replica} is not a replica"
        if not self.replica_synced(replica):
            return f"replica {replica}: link to its primary not up / initial sync not done"
        not_ok = [p for p in self.ports if not self.cluster_ok(p)]
        if not_ok:
            return f"cluster_state is not ok on {not_ok}"
        replica_id, primary_id = self.node_id(replica), self.node_id(primary)
        for port in self.ports:
            if self.role(port) != "master":
                continue
            known = [f for f in self._node_lines(port) if f[0] == replica_id]
            if not known or "slave" not in known[0][2] or known[0][3] != primary_id:
                return f"primary {port} does not yet know {replica} as a replica of {primary}"
        return None

    def failover(
        self, replica: int, *, timeout: float = 30.0, force_if_refused: bool = False
    ) -> float:
        """Promote ``replica`` (manual ``CLUSTER FAILOVER``); seconds until its ``ROLE`` is master.

        Waits (within ``timeout``) for ``failover_blocker`` to clear and for the replica's offset
        to reach the primary's, issues ``CLUSTER FAILOVER``, then polls ``ROLE`` on the replica
        itself. A manual failover that is accepted but not completed (Redis drops it after 5 s,
        e.g. an election that did not get a majority in time on a loaded machine) is re-issued,
        which is safe: it restarts the handshake. ``CLUSTER FAILOVER FORCE`` (no handshake with
        the primary, so acknowledged writes can be lost) is used only if ``force_if_refused`` and
        a normal one is refused with an error; by default a refusal raises.
        """
        t0 = time.monotonic()
        deadline = t0 + timeout
        attempt_s = 5.0 + 2 * self.node_timeout_ms / 1000  # Redis's manual-failover timeout + slack
        attempts: list[str] = []
        while time.monotonic() < deadline:
            if self.role(replica) == "master":
                return time.monotonic() - t0
            blocker = self.failover_blocker(replica)
            primary = self.primary_of(replica)
            if blocker is None and primary is not None:
                target = int(self.info(primary).get("master_repl_offset", "0"))
                if int(self.info(replica).get("slave_repl_offset", "-1")) < target:
                    blocker = f"replica {replica} behind primary offset {target}"
            if blocker is not None:
                attempts.append(blocker)
                time.sleep(0.1)
                continue
            out = self.cli(replica, "CLUSTER", "FAILOVER").strip()
            if "OK" not in out:
                if self.role(replica) == "master":  # promoted meanwhile
                    return time.monotonic() - t0
                if not force_if_refused:
                    raise ConfigurationError(f"CLUSTER FAILOVER on {replica} refused: {out}")
                out = self.cli(replica, "CLUSTER", "FAILOVER", "FORCE").strip()
                if "OK" not in out:
                    raise ConfigurationError(f"CLUSTER FAILOVER FORCE on {replica} refused: {out}")
            attempts.append(f"issued after {time.monotonic() - t0:.2f}s")
            until = min(deadline, time.monotonic() + attempt_s)
            while time.monotonic() < until:
                if self.role(replica) == "master":
                    return time.monotonic() - t0
                time.sleep(0.1)
        raise ConfigurationError(
            f"replica {replica} was not promoted within {timeout:.0f}s (last: {attempts[-3:]})"
        )

    def wait_role(self, port: int, role: str, *, timeout: float = 30.0) -> bool:
        """Poll ``ROLE`` on ``port`` until it is ``role`` (``master`` / ``slave``)."""
        deadline = time.monotonic() + timeout
        while self.role(port) != role:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

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
