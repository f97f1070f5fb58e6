"""``durable-redis doctor``: checks of the Redis a namespace lives on, with what to fix.

Each check gives a verdict (``ok``, ``warn``, ``fail``, ``skip``), one line saying what was
found, and, unless ``ok``, what to do about it. A ``fail`` means acknowledged work can be lost
or nothing can run; ``warn`` means something an operator should look at.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from durable_redis.storage._replies import _s
from durable_redis.storage.keys import meta_key
from durable_redis.storage.redis_base import SCHEMA_VERSION, RedisStoreBase
from durable_redis.storage.scripts import SCRIPTS, load_script_source
from durable_redis.storage.workers import WorkerRegistry

__all__ = ["Check", "DoctorReport", "render_text", "run_checks"]

RECOMMENDED_VERSION = (7, 2)
OLDEST_VERSION = (6, 2)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    verdict: str  # "ok" | "warn" | "fail" | "skip"
    found: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class DoctorReport:
    namespace: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.verdict != "fail" for c in self.checks)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


async def _config(r: Any, name: str) -> str | None:
    reply = await r.config_get(name)
    if not reply:
        return None
    return _s(next(iter(reply.values())))


def check_version(info: dict[str, Any]) -> Check:
    text = _s(info.get("redis_version", "?"))
    version = _version(text)
    if version >= RECOMMENDED_VERSION:
        return Check("version", "ok", f"Redis {text}")
    if version >= OLDEST_VERSION:
        return Check(
            "version",
            "warn",
            f"Redis {text} (7.2 or newer is recommended)",
            "upgrade to Redis 7.2+ (durable-redis is tested on it; 6.2 still runs)",
        )
    return Check("version", "fail", f"Redis {text} is too old", "upgrade to Redis 7.2 or newer")


def check_eviction(policy: str | None) -> Check:
    if policy is None:
        return Check("maxmemory-policy", "skip", "CONFIG GET is not allowed", "check it by hand")
    if policy == "noeviction":
        return Check("maxmemory-policy", "ok", "noeviction")
    return Check(
        "maxmemory-policy",
        "fail",
        f"{policy}: Redis may evict workflow state under memory pressure",
        "CONFIG SET maxmemory-policy noeviction (and put it in redis.conf)",
    )


def check_persistence(appendonly: str | None, fsync: str | None) -> Check:
    if appendonly is None:
        return Check("persistence", "skip", "CONFIG GET is not allowed", "check AOF by hand")
    if appendonly != "yes":
        return Check(
            "persistence",
            "warn",
            "AOF is off: a Redis crash or restart loses work acknowledged since the last RDB "
            "snapshot (or everything)",
            "CONFIG SET appendonly yes; CONFIG SET appendfsync everysec (and in redis.conf)",
        )
    if fsync == "no":
        return Check(
            "persistence",
            "warn",
            "AOF on, appendfsync no: the OS decides when writes reach the disk",
            "CONFIG SET appendfsync everysec",
        )
    return Check("persistence", "ok", f"AOF on, appendfsync {fsync}")


def check_memory(info: dict[str, Any]) -> Check:
    used = int(info.get("used_memory", 0))
    limit = int(info.get("maxmemory", 0))
    mb = used / 1e6
    if limit <= 0:
        return Check(
            "memory",
            "warn",
            f"{mb:.1f} MB used, no maxmemory set: Redis grows until the machine runs out",
            "set maxmemory below the machine's RAM (with noeviction, writes then fail loudly "
            "instead of the OS killing Redis)",
        )
    share = used / limit
    found = f"{mb:.1f} MB of {limit / 1e6:.1f} MB used ({share:.0%})"
    if share >= 0.9:
        return Check("memory", "fail", found, "raise maxmemory or lower the retention")
    if share >= 0.75:
        return Check("memory", "warn", found, "raise maxmemory or lower the retention soon")
    return Check("memory", "ok", found)


def check_latency(samples_ms: list[float]) -> Check:
    median = statistics.median(samples_ms)
    worst = max(samples_ms)
    found = f"PING median {median:.2f} ms, max {worst:.2f} ms over {len(samples_ms)}"
    if median > 50:
        return Check("latency", "fail", found, "put the workers near Redis; check its load")
    if median > 5:
        return Check("latency", "warn", found, "every turn is a few round trips: keep RTT < 5 ms")
    return Check("latency", "ok", found)


def check_clock(skew_ms: float) -> Check:
    found = f"server clock {skew_ms:+.0f} ms from this machine's"
    if abs(skew_ms) > 30_000:
        return Check(
            "clock",
            "fail",
            found,
            "run NTP on both; leases are judged on Redis's clock, but start_at times, "
            "the dashboard's ages and timers created from local times are not",
        )
    if abs(skew_ms) > 1_000:
        return Check("clock", "warn", found, "run NTP (chrony/systemd-timesyncd) on both")
    return Check("clock", "ok", found)


def check_schema(meta: dict[str, str]) -> Check:
    if not meta:
        return Check(
            "schema",
            "warn",
            "the namespace does not exist yet (no metadata)",
            "start a worker or client with the right --namespace; a typo here means an empty one",
        )
    schema = meta.get("schema", "?")
    found = f"schema {schema}, {meta.get('partitions', '1')} partition(s)"
    if schema != SCHEMA_VERSION:
        return Check(
            "schema",
            "fail",
            found + f"; this version of durable-redis expects schema {SCHEMA_VERSION}",
            "run the durable-redis version that wrote this namespace",
        )
    if meta.get("test_clock") == "1":  # storage/test_clock.py
        offset = int(meta.get("clock_offset", "0"))
        return Check(
            "schema",
            "warn",
            found + f"; a TEST namespace (durable_redis.testing): virtual clock {offset:+d} ms",
            "created by a test environment; production workers ignore its clock (keep "
            "production work out of it)",
        )
    return Check("schema", "ok", found)


def check_scripts(loaded: list[bool]) -> Check:
    total, have = len(loaded), sum(loaded)
    if have == total:
        return Check("scripts", "ok", f"all {total} Lua scripts loaded")
    return Check(
        "scripts",
        "warn",
        f"{have} of {total} Lua scripts loaded (Redis restarted or SCRIPT FLUSH)",
        "nothing to do if workers are starting: they load scripts on first use",
    )


def check_workers(workers: list[Any], own_version: str) -> Check:
    if not workers:
        return Check(
            "workers",
            "warn",
            "no live workers: nothing runs",
            "start `durable-redis worker MODULE:APP` with this URL and namespace",
        )
    versions = sorted({w.version for w in workers})
    found = f"{len(workers)} live worker(s), version(s) {', '.join(versions)}"
    if len(versions) > 1 or versions[0] != own_version:
        return Check(
            "workers",
            "warn",
            found + f" (this CLI is {own_version})",
            "a rolling deploy in progress is fine; otherwise align the versions",
        )
    return Check("workers", "ok", found)


async def _guard(name: str, make: Callable[[], Awaitable[Check]]) -> Check:
    try:
        return await make()
    except Exception as exc:
        return Check(name, "fail", f"could not check: {type(exc).__name__}: {exc}", "see above")


async def run_checks(store: RedisStoreBase, *, latency_samples: int = 20) -> DoctorReport:
    """Run every check against ``store``'s Redis and namespace (read-only)."""
    from durable_redis._version import __version__

    r: Any = store._r

    async def config(name: str) -> str | None:
        try:
            return await _config(r, name)
        except Exception:
            return None

    async def version() -> Check:
        return check_version(await r.info("server"))

    async def eviction() -> Check:
        return check_eviction(await config("maxmemory-policy"))

    async def persistence() -> Check:
        return check_persistence(await config("appendonly"), await config("appendfsync"))

    async def memory() -> Check:
        return check_memory(await r.info("memory"))

    async def latency() -> Check:
        samples = []
        for _ in range(max(1, latency_samples)):
            start = time.perf_counter()
            await r.ping()
            samples.append((time.perf_counter() - start) * 1000)
        return check_latency(samples)

    async def clock() -> Check:
        before = time.time() * 1000
        server = await store.server_time_ms()
        after = time.time() * 1000
        return check_clock(server - (before + after) / 2)

    async def schema() -> Check:
        raw = await r.hgetall(meta_key(store.namespace))
        return check_schema({_s(k): _s(v) for k, v in raw.items()})

    async def scripts() -> Check:
        shas = [hashlib.sha1(load_script_source(n).encode()).hexdigest() for n in SCRIPTS]
        return check_scripts([bool(x) for x in await r.script_exists(*shas)])

    async def workers() -> Check:
        return check_workers(await WorkerRegistry(store).list(), __version__)

    steps: list[tuple[str, Callable[[], Awaitable[Check]]]] = [
        ("version", version),
        ("maxmemory-policy", eviction),
        ("persistence", persistence),
        ("memory", memory),
        ("latency", latency),
        ("clock", clock),
        ("schema", schema),
        ("scripts", scripts),
        ("workers", workers),
    ]
    checks = [await _guard(name, make) for name, make in steps]
    return DoctorReport(store.namespace, tuple(checks))


_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def render_text(report: DoctorReport) -> str:
    lines = [f"durable-redis doctor, namespace {report.namespace!r}"]
    for c in report.checks:
        lines.append(f"[{_MARK[c.verdict]}] {c.name:<17} {c.found}")
        if c.fix:
            lines.append(f"       {'':<17} fix: {c.fix}")
    failed = [c.name for c in report.checks if c.verdict == "fail"]
    lines.append("verdict: " + ("FAIL (" + ", ".join(failed) + ")" if failed else "ok"))
    return "\n".join(lines)
