"""Retry policies for activities. Back-off waits are durable timers in the history."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from durable_redis.errors import ConfigurationError, FailureDetails

__all__ = ["Backoff", "RetryPolicy", "to_ms"]


class Backoff(enum.StrEnum):
    FIXED = "fixed"  # initial_delay every time
    LINEAR = "linear"  # initial_delay * attempt
    EXPONENTIAL = "exponential"  # initial_delay * multiplier ** (attempt - 1)


def to_ms(value: timedelta | float | int) -> int:
    """A duration (timedelta or seconds) in whole milliseconds."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ConfigurationError(f"a duration cannot be negative: {value!r}")
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How to retry a failing activity.

    ``timeout`` is per attempt; an attempt that times out counts as a failed attempt
    (``ActivityTimeoutError``). ``non_retryable`` lists exception type names (or classes) that
    fail at once. Durations take a ``timedelta`` or seconds.
    """

    max_attempts: int = 3
    initial_delay: timedelta | float = 1.0
    backoff: Backoff = Backoff.EXPONENTIAL
    multiplier: float = 2.0
    max_delay: timedelta | float = 60.0
    timeout: timedelta | float | None = None
    non_retryable: tuple[str | type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.multiplier < 1.0:
            raise ConfigurationError(f"multiplier must be >= 1, got {self.multiplier}")
        object.__setattr__(self, "backoff", Backoff(self.backoff))
        to_ms(self.initial_delay)
        to_ms(self.max_delay)
        if self.timeout is not None and to_ms(self.timeout) <= 0:
            raise ConfigurationError("timeout must be positive")

    @property
    def timeout_ms(self) -> int | None:
        return None if self.timeout is None else to_ms(self.timeout)

    def delay_ms(self, attempt: int) -> int:
        """Back-off after failed attempt number ``attempt`` (1-based), capped at max_delay."""
        base = to_ms(self.initial_delay)
        if self.backoff is Backoff.FIXED:
            delay = float(base)
        elif self.backoff is Backoff.LINEAR:
            delay = float(base * attempt)
        else:
            delay = base * self.multiplier ** (attempt - 1)
        return int(min(delay, to_ms(self.max_delay)))

    def is_retryable(self, failure: FailureDetails) -> bool:
        for entry in self.non_retryable:
            name = entry if isinstance(entry, str) else entry.__name__
            if failure.type_name == name or failure.type_name.endswith("." + name):
                return False
        return True
