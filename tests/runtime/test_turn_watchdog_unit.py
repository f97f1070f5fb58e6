"""The turn watchdog in-process: spinning code is interrupted (also inside an event loop and
when it swallows the first interruption), a normal turn costs about a microsecond, and no
interruption escapes after a turn ended."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from durable_redis.errors import ConfigurationError, TurnTimeoutError
from durable_redis.runtime import WorkerOptions
from durable_redis.runtime.watchdog import TurnWatchdog


@pytest.fixture
def watchdog() -> Iterator[TurnWatchdog]:
    w = TurnWatchdog(0.2)
    yield w
    w.close()


def _spin() -> None:
    while True:
        pass


def test_a_spinning_turn_is_interrupted(watchdog: TurnWatchdog) -> None:
    started = time.monotonic()
    with pytest.raises(TurnTimeoutError) as info:
        watchdog.run(_spin)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.5
    assert info.value.elapsed_s >= 0.2
    assert watchdog.interrupted == 1


def test_spinning_inside_an_event_loop_is_interrupted(watchdog: TurnWatchdog) -> None:
    async def spin() -> None:
        while True:
            await asyncio.sleep(0)

    def turn() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(spin())
        finally:
            loop.close()

    with pytest.raises(TurnTimeoutError):
        watchdog.run(turn)


def test_code_that_swallows_the_interruption_is_interrupted_again(watchdog: TurnWatchdog) -> None:
    def stubborn() -> None:
        with contextlib.suppress(BaseException):  # what a careless orchestration does
            _spin()
        _spin()

    with pytest.raises(TurnTimeoutError) as info:
        watchdog.run(stubborn)
    assert info.value.elapsed_s >= 0.4


def test_turns_in_threads_are_watched_separately(watchdog: TurnWatchdog) -> None:
    results: dict[str, str] = {}

    def spinner() -> None:
        try:
            watchdog.run(_spin)
        except TurnTimeoutError:
            results["spinner"] = "interrupted"

    thread = threading.Thread(target=spinner)
    thread.start()
    for _ in range(50):  # quick turns on this thread meanwhile: never interrupted
        assert watchdog.run(time.sleep, 0.01) is None
    thread.join(5)
    assert results == {"spinner": "interrupted"}


def test_quick_turns_cost_little_and_leave_nothing_pending(watchdog: TurnWatchdog) -> None:
    n = 20_000
    started = time.perf_counter()
    for i in range(n):
        assert watchdog.run(int, i) == i
    per_turn_us = (time.perf_counter() - started) / n * 1e6
    assert per_turn_us < 50, per_turn_us  # ~1.4 us measured (docs/reliability.md)
    time.sleep(0.5)  # past the timeout: nothing may surface after the turns ended
    assert watchdog.interrupted == 0


def test_options() -> None:
    assert WorkerOptions().turn_timeout == 2.0
    assert WorkerOptions().max_turn_crashes == 3
    assert WorkerOptions(turn_timeout=None, max_turn_crashes=0).turn_timeout is None
    with pytest.raises(ConfigurationError):
        WorkerOptions(turn_timeout=0)
    with pytest.raises(ConfigurationError):
        WorkerOptions(max_turn_crashes=-1)


def test_turns_ending_as_the_timeout_fires_never_leak_an_interruption() -> None:
    """Turns as long as the timeout (4 ms, under the GIL's 5 ms switch interval): each ends
    either normally or with TurnTimeoutError, and no interruption surfaces outside a turn."""
    watchdog = TurnWatchdog(0.004)

    def busy(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    outcomes = {"ok": 0, "timeout": 0}
    try:
        for i in range(500):
            try:
                watchdog.run(busy, 0.003 + (i % 5) * 0.0005)
                outcomes["ok"] += 1
            except TurnTimeoutError:
                outcomes["timeout"] += 1
            busy(0.0002)  # the worker's own code between turns
        busy(0.3)  # a stray interruption would be raised here, failing the test
    finally:
        watchdog.close()
    assert outcomes["ok"] + outcomes["timeout"] == 500
    assert outcomes["timeout"] > 0
