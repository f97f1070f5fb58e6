"""Failover: a primary is replaced by its replica mid-run; nothing the client saw complete is lost.

A private cluster with 3 primaries and 1 replica each; a namespace with P = 8; two worker
processes run ``parent`` orchestrations (children in other partitions: outbox traffic) while the
client keeps starting more. Mid-run, ``CLUSTER FAILOVER`` on a replica promotes it (the primary
waits for the replica to catch up, so acknowledged writes survive, as they would not in a forced
failover without WAIT; ``LocalCluster.failover`` never forces, waits for the replica to be synced
and the cluster ok first, and confirms the promotion on the replica itself). Afterwards: every
instance whose start returned completes with the right result, and every result read before the
failover reads the same after it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import to_thread

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from e2e_helpers import WorkerPool  # noqa: E402

from durable_redis.client import Client  # noqa: E402
from durable_redis.devtools.cluster_server import LocalCluster  # noqa: E402
from durable_redis.storage.keys import PartitionKeys, cluster_slot  # noqa: E402
from durable_redis.storage.redis_store import RedisStore  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def replicated_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(primaries=3, replicas=1) as cluster:
        yield cluster


def replica_of_partition_owner(cluster: LocalCluster, namespace: str) -> tuple[int, int]:
    """(primary port, replica port) of the shard holding partition 0 of ``namespace``.

    Each node's own ``myself`` line is authoritative for its role, slots and primary.
    """
    slot = cluster_slot(PartitionKeys(namespace, 0).pmeta)
    for port in cluster.ports:
        for line in cluster.reply_text(port, "CLUSTER", "NODES").splitlines():
            f = line.split()
            if "myself" in f[2] and "master" in f[2]:
                for rng in f[8:]:
                    lo, _, hi = rng.partition("-")
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        for q in cluster.ports:
                            if cluster.primary_of(q) == port:
                                return port, q
    raise AssertionError("no replica found")


async def test_primary_failover_mid_run_loses_nothing_seen_complete(
    replicated_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    import e2e_app

    cluster = replicated_cluster
    url = cluster.url
    store = RedisStore.from_url(url, namespace=namespace, partitions=8)
    await store.initialize()
    await store.close()
    pool = WorkerPool(url, namespace, tmp_path)
    try:
        pool.start()
        pool.start()
        async with Client.from_url(url, namespace=namespace, app=e2e_app.app) as client:
            started: list[tuple[str, list[int]]] = []
            seen_done: dict[str, Any] = {}

            async def start_some(n: int) -> None:
                for _ in range(n):
                    k = len(started)
                    xs = [k, k + 1, k + 2]
                    iid = await client.start("parent", xs)
                    started.append((iid, xs))

            await start_some(6)
            for iid, _xs in started[:3]:
                seen_done[iid] = await client.wait_for_completion(iid, timeout=60)
            primary, replica = replica_of_partition_owner(cluster, namespace)
            assert cluster.role(primary) == "master"
            async with anyio.create_task_group() as tg:
                tg.start_soon(start_some, 6)
                await anyio.sleep(0.2)
                # waits for the replica link up + caught up and cluster_state:ok everywhere,
                # issues CLUSTER FAILOVER (never FORCE), re-issues it if Redis drops it, and
                # confirms ROLE master on the replica itself; in a thread: starts go on meanwhile.
                promoted_after = await to_thread.run_sync(
                    lambda: cluster.failover(replica, timeout=60)
                )
            await start_some(3)
            for iid, xs in started:
                result = await client.wait_for_completion(iid, timeout=90)
                assert result == [2 * x for x in xs], iid
            for iid, result in seen_done.items():
                state = await client.get_status(iid)
                assert state is not None and state.output == result, iid
            assert cluster.wait_role(primary, "slave", timeout=30), "old primary not demoted"
            print(f"failover: replica promoted after {promoted_after:.2f}s; {len(started)} ok")
    except BaseException:
        sys.stderr.write(pool.logs()[-20000:])
        raise
    finally:
        pool.close()
