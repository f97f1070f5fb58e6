"""Test hook (G21, tests/reliability/test_clock_skew.py): a process started with this directory
on its PYTHONPATH and ``DURABLE_REDIS_TEST_CLOCK_SKEW_S`` set sees its wall clock (``time.time``,
``time.time_ns``) off by that many seconds, as on a host whose clock is wrong. Monotonic clocks
are left alone (a wrong wall clock does not change them)."""

from __future__ import annotations

import os
import time

_skew = os.environ.get("DURABLE_REDIS_TEST_CLOCK_SKEW_S")
if _skew:
    _offset = float(_skew)
    _offset_ns = int(_offset * 1e9)
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _offset
    time.time_ns = lambda: _time_ns() + _offset_ns
