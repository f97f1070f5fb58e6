from __future__ import annotations

import os

import pytest

from durable_redis.errors import ConfigurationError
from durable_redis.runtime.options import WorkerOptions, new_worker_id


def test_defaults_are_valid() -> None:
    options = WorkerOptions()
    assert options.max_attempts == 10
    assert options.session_idle_timeout is None
    assert options.lock_ms == 30_000
    assert options.session_lock_ms == 60_000
    assert 0 < options.effective_renewal_interval < options.lock_timeout


@pytest.mark.parametrize(
    "kwargs",
    [
        {"orchestration_concurrency": 0},
        {"activity_concurrency": -1},
        {"batch_size": 0},
        {"max_attempts": 0},
        {"max_sessions_per_worker": -1},
        {"lock_timeout": 0},
        {"lock_timeout": 0.1},
        {"session_lock_timeout": -5},
        {"renewal_interval": 40.0},
        {"session_idle_timeout": -1},
        {"shutdown_grace_period": -1},
        {"unregistered_backoff": 2.0, "unregistered_backoff_max": 1.0},
        {"fetch_wait": 0},
        {"worker_id": ""},
        {"worker_id": "a{b}"},
        {"batch_size": True},
        {"lock_timeout": "3"},
    ],
)
def test_invalid_options_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        WorkerOptions(**kwargs)  # type: ignore[arg-type]


def test_options_are_frozen() -> None:
    options = WorkerOptions()
    with pytest.raises(AttributeError):
        options.batch_size = 3  # type: ignore[misc]


def test_unregistered_backoff_grows_and_caps() -> None:
    options = WorkerOptions(unregistered_backoff=0.5, unregistered_backoff_max=4.0)
    delays = [options.unregistered_delay_ms(n) for n in range(1, 8)]
    assert delays == [500, 1000, 2000, 4000, 4000, 4000, 4000]


def test_renewal_interval_respects_session_lock() -> None:
    options = WorkerOptions(lock_timeout=30, session_lock_timeout=3)
    assert options.effective_renewal_interval == pytest.approx(1.0)


def test_worker_ids_are_unique_and_name_the_process() -> None:
    a, b = new_worker_id(), new_worker_id()
    assert a != b
    assert f":{os.getpid()}:" in a
