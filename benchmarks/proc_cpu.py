"""CPU seconds of a process from /proc (standard library only, so any tree's benchmark can
load it: ``harness.py`` and ``ab_trees.py`` count CPU alike)."""

from __future__ import annotations

import os

__all__ = ["CLK", "proc_cpu_s"]

CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of one process: the sum of /proc/<pid>/task/*/schedstat (ns; every live
    thread: /proc/<pid>/schedstat alone is the main thread's, which left out sync activities
    and big turns run in worker threads), else /proc stat (user+sys and reaped children, in
    clock ticks: 10 ms steps). A thread that exited during a run is not counted (anyio's
    worker threads stay 10 s idle first)."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # the thread ended meanwhile
        if total:
            return total / 1e9
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in parts[11:15]) / CLK
    except OSError:
        return 0.0
