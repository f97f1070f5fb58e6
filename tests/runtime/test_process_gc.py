"""A worker process tunes its garbage collector once its app is imported (``tune_gc``):
startup objects frozen out of every later collection, a gen0 threshold of 10,000; and
``DURABLE_REDIS_GC=default`` keeps CPython's settings. Run in a child interpreter: the test
process keeps its own GC."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from durable_redis.runtime.process import WORKER_GC_GEN0

PROBE = (
    "import gc, json\n"
    "from durable_redis.runtime.process import tune_gc\n"
    "before = gc.get_threshold()\n"
    "tune_gc()\n"
    "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))\n"
)


def probe(**env: str) -> tuple[list[int], list[int], int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    before, after, frozen = json.loads(out)
    return before, after, frozen


def test_a_worker_process_freezes_its_startup_objects_and_collects_gen0_less_often() -> None:
    before, after, frozen = probe(DURABLE_REDIS_GC="")
    assert after == [max(before[0], WORKER_GC_GEN0), before[1], before[2]]
    assert after[0] > before[0]  # CPython's default (700) is raised
    assert frozen > 1000  # the modules, the app: everything imported by then


def test_durable_redis_gc_default_keeps_cpythons_settings() -> None:
    before, after, frozen = probe(DURABLE_REDIS_GC="default")
    assert after == before
    assert frozen == 0
