"""What the virtual clock costs a script: server-side microseconds per call (Redis's own
``INFO commandstats``) of scripts built three ways, on one private redis-server:

- ``before``: ``server_now()`` as it was before the test clock existed (``TIME`` only);
- ``production``: today's production build (the ``-- @test_clock`` line is a comment);
- ``test_clock``: the build a test environment loads (one HMGET of the partition metadata).

Each script runs against an idle namespace (the common case: a fetch that finds nothing, a
renewal), so the clock read is as large a share of the call as it gets.

    .venv/bin/python benchmarks/clock_cost.py [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import redis

from durable_redis.devtools.server import RedisServer
from durable_redis.storage.keys import PartitionKeys, meta_key
from durable_redis.storage.scripts import load_script_source

NS = "clock-cost"


BEFORE = """local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end"""


def before_source(name: str) -> str:
    """The script with ``server_now()`` as it was before the test clock (TIME only)."""
    source = load_script_source(name)
    start = source.index("local function server_now()")
    end = source.index("\nend", start) + len("\nend")
    return source[:start] + BEFORE + source[end:]


def calls_for(pk: PartitionKeys) -> dict[str, tuple[list[str], list[Any]]]:
    return {
        "claim_orchestration": (
            [pk.pmeta, pk.seq, pk.oq_ready, pk.oq_locks, pk.oq_lock, pk.oq_marker],
            ["e", "nonce", 30000],
        ),
        "renew_orchestration": ([pk.pmeta, pk.oq_lock, pk.oq_locks], ["e", "i", "tok", 30000]),
    }


def usec_per_call(r: redis.Redis, sha: str, keys: list[str], args: list[Any], n: int) -> float:
    r.config_resetstat()
    pipe = r.pipeline(transaction=False)
    for _ in range(n):
        pipe.evalsha(sha, len(keys), *keys, *args)
    pipe.execute()
    stats = r.info("commandstats")["cmdstat_evalsha"]
    return float(stats["usec_per_call"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    with RedisServer() as server:
        r = redis.Redis(unix_socket_path=server.socket_path)
        pk = PartitionKeys(NS, 0)
        r.hset(meta_key(NS), mapping={"epoch": "e", "partitions": "1", "test_clock": "1"})
        r.hset(pk.pmeta, mapping={"epoch": "e", "test_clock": "1", "clock_offset": "86400000"})
        for name, (keys, args) in calls_for(pk).items():
            builds = {
                "before": before_source(name),
                "production": load_script_source(name),
                "test_clock": load_script_source(name, test_clock=True),
            }
            shas = {build: r.script_load(src) for build, src in builds.items()}
            results: dict[str, list[float]] = {b: [] for b in builds}
            for _ in range(opts.rounds):  # interleaved, so load on the machine hits all alike
                for build, sha in shas.items():
                    results[build].append(usec_per_call(r, sha, keys, args, opts.calls))
            row = ", ".join(
                f"{b} {min(v):.2f} us (median {statistics.median(v):.2f})"
                for b, v in results.items()
            )
            print(f"{name}: {row}; best of {opts.rounds} x {opts.calls} calls")


if __name__ == "__main__":
    main()
