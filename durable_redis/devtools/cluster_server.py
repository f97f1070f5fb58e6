"""``LocalCluster``: a private Redis Cluster (N primaries, optional replicas) for tests and benches.

Every node is a ``redis-server --cluster-enabled yes`` child process on a free loopback port, in
one temporary directory. The cluster is formed through redis-py alone (no ``redis-cli``): each
node gets its own config epoch, ``CLUSTER MEET`` joins them, ``CLUSTER ADDSLOTSRANGE`` splits the
16384 slots over the primaries and ``CLUSTER REPLICATE`` attaches the replicas. ``stop()`` stops
each node by its own pid. Used by the cluster test fixtures and ``benchmarks/cluster_bench.py``::

    with LocalCluster(primaries=3) as cluster:
        store = RedisStore.from_url(cluster.url, partitions=8)

``start()`` returns once every node reports ``cluster_state:ok``, every node agrees on who owns
which slots and who replicates whom, and every replica's link to its primary is up with its
initial sync done (``repl-diskless-sync-delay`` is 0 here: Redis's default of 5 s would leave a
fresh replica unsynced for 5 s). ``failover(replica)`` is a manual ``CLUSTER FAILOVER`` that waits
for the conditions it needs first and confirms the promotion from the replica itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis

from durable_redis.devtools._lifecycle import StopOnExit
from durable_redis.devtools.server import RedisServer, resolve_redis_server
from durable_redis.errors import ConfigurationError

__all__ = ["LocalCluster"]

SLOTS = 16384


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


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """The 16384 slots split into ``primaries`` contiguous ``(first, last)`` ranges."""
    bounds = [SLOTS * i // primaries for i in range(primaries + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]


class LocalCluster(StopOnExit):
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
        resolve_redis_server()  # a clear ConfigurationError now if there is no usable binary
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.persistence = persistence
        self.startup_timeout_s = startup_timeout_s
        self.directory: str | None = None
        self.nodes: list[RedisServer] = []
        self._clients: dict[int, Any] = {}  # redis.Redis (execute_command is untyped)

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
        try:
            self._create()
        except BaseException:
            self.stop()
            raise
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

    def _wait(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while not done():
            if time.monotonic() >= deadline:
                raise ConfigurationError(f"the local cluster: {what} not reached in time")
            time.sleep(0.05)

    def _create(self) -> None:
        """Form the cluster with plain commands (what ``redis-cli --cluster create`` does)."""
        ports = self.ports
        for epoch, port in enumerate(ports, start=1):  # distinct epochs: no collision to settle
            self.command(port, "CLUSTER", "SET-CONFIG-EPOCH", str(epoch))
        for port in ports[1:]:
            self.command(ports[0], "CLUSTER", "MEET", "127.0.0.1", str(port))
        self._wait("every node knowing every other", lambda: self._all_known(len(ports)))
        for port, (first, last) in zip(ports, slot_ranges(self.primaries), strict=False):
            self.command(port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
        primary_ids = [self.node_id(p) for p in ports[: self.primaries]]
        for i, port in enumerate(ports[self.primaries :]):
            self.command(port, "CLUSTER", "REPLICATE", primary_ids[i % self.primaries])
        self._wait("cluster_state:ok on every node", lambda: all(map(self.cluster_ok, ports)))
        self._wait("one view of slots and replicas on every node", self._agreed)
        self._wait(
            "every replica synced",
            lambda: sum(map(self.replica_synced, ports)) == self.primaries * self.replicas,
        )

    def _all_known(self, count: int) -> bool:
        for port in self.ports:
            lines = self._node_lines(port)
            if len(lines) != count or any(
                {"handshake", "noaddr", "fail", "fail?"} & set(f[2].split(",")) for f in lines
            ):
                return False
        return True

    def _view(self, port: int) -> set[tuple[str, str, tuple[str, ...]]]:
        """``port``'s view: (node id, primary id or '-', slot ranges) of every node."""
        return {(f[0], f[3], tuple(f[8:])) for f in self._node_lines(port)}

    def _agreed(self) -> bool:
        views = [self._view(p) for p in self.ports]
        return self._all_known(len(self.ports)) and all(v == views[0] for v in views)

    def _client(self, port: int) -> Any:
        client = self._clients.get(port)
        if client is None:
            client = redis.Redis(
                host="127.0.0.1", port=port, socket_timeout=10, decode_responses=True
            )
            client.response_callbacks.clear()  # raw replies: INFO and CLUSTER NODES as text
            self._clients[port] = client
        return client

    def command(self, port: int, *command: str) -> Any:
        """One command on the node on ``port``, its raw reply (text); a refusal raises."""
        try:
            return self._client(port).execute_command(*command)
        except redis.ResponseError as exc:
            raise ConfigurationError(f"{' '.join(command)} on {port}: {exc}") from exc

    def reply_text(self, port: int, *command: str) -> str:
        """The reply of one command as text, ``""`` if the node is unreachable (polling)."""
        try:
            reply = self._client(port).execute_command(*command)
        except redis.ResponseError as exc:
            return f"ERR {exc}"
        except redis.RedisError:
            return ""
        if isinstance(reply, list):
            return "\n".join(str(x) for x in reply)
        return str(reply)

    def cluster_ok(self, port: int) -> bool:
        info = self.reply_text(port, "CLUSTER", "INFO")
        return "cluster_state:ok" in info and f"cluster_slots_ok:{SLOTS}" in info

    def role(self, port: int) -> str:
        out = self.reply_text(port, "ROLE").split()
        return out[0] if out else ""

    def info(self, port: int, section: str = "replication") -> dict[str, str]:
        """``INFO <section>`` of one node as a dict."""
        out = self.reply_text(port, "INFO", section)
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
        nodes = self.reply_text(port, "CLUSTER", "NODES")
        return [line.split() for line in nodes.splitlines() if line]

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
            out = self.reply_text(replica, "CLUSTER", "FAILOVER").strip()
            if "OK" not in out:
                if self.role(replica) == "master":  # promoted meanwhile
                    return time.monotonic() - t0
                if not force_if_refused:
                    raise ConfigurationError(f"CLUSTER FAILOVER on {replica} refused: {out}")
                out = self.reply_text(replica, "CLUSTER", "FAILOVER", "FORCE").strip()
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
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()
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
