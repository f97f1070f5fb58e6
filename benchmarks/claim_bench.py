"""Server-side cost of one ``claim_orchestration`` call: the script at git REV vs the working
tree's, on the embedded Redis (version routing, issue 16: the skip list must cost nothing on
the common path). ``CONFIG RESETSTAT`` before each batch; ``usec_per_call`` of EVALSHA after.

    .venv/bin/python benchmarks/claim_bench.py --base main [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
from pathlib import Path

import redis

from durable_redis.devtools import RedisServer
from durable_redis.storage.scripts import lua_dir

KEYS = ["pm", "seq", "ready", "locks", "lock", "marker"]


def _inline(text: str) -> str:
    common = (lua_dir() / "includes" / "common.lua").read_text()
    return re.sub(r"^-- @include common\s*$", lambda _: common, text, flags=re.M)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision of the old script")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    old = subprocess.run(
        ["git", "show", f"{args.base}:lua/claim_orchestration.lua"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    scripts = {
        "base": _inline(old),
        "now": _inline((lua_dir() / "claim_orchestration.lua").read_text()),
    }
    server = RedisServer().start()
    try:
        r = redis.Redis.from_url(server.url)
        sha = {name: r.script_load(text) for name, text in scripts.items()}
        r.hset("pm", "epoch", "1")
        for case in ("empty queue", "work due"):
            usec: dict[str, list[float]] = {name: [] for name in sha}
            for round_ in range(args.rounds):
                for name in sorted(sha, reverse=bool(round_ % 2)):
                    r.delete("ready", "locks", "lock", "marker")
                    if case == "work due":
                        r.zadd("ready", {f"i{i}": i for i in range(args.calls)})
                    r.config_resetstat()
                    pipe = r.pipeline(transaction=False)
                    for _ in range(args.calls):
                        pipe.evalsha(sha[name], len(KEYS), *KEYS, "1", "n", 60_000)
                    pipe.execute()
                    usec[name].append(r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
            medians = ", ".join(f"{n} {statistics.median(v):.1f} us" for n, v in usec.items())
            print(f"{case}: {medians} per claim (median of {args.rounds} x {args.calls})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
