"""Why the worker stops an in-flight activity or job: a ``CancelCause``, not a reason string.

The cause decides what happens to the item: one the worker may still own (its session moved or
was released, or the worker shuts down) is handed back, without counting an attempt; one whose
lease is gone is dropped (its new owner runs it). The log line reads ``cause.value`` plus detail.
"""

from __future__ import annotations

import enum

__all__ = ["CancelCause"]


class CancelCause(enum.Enum):
    SESSION_CLOSED = "session closed"
    SESSION_LEASE_LOST = "session lease lost"
    SESSION_RELEASED = "session released"
    ACTIVITY_LEASE_LOST = "activity lease lost"
    JOB_LEASE_LOST = "job lease lost"
    SHUTDOWN = "shutdown"

    @property
    def hands_back(self) -> bool:
        """Abandon the item for another worker (no attempt counted) instead of dropping it."""
        return (
            self is not CancelCause.ACTIVITY_LEASE_LOST and self is not CancelCause.JOB_LEASE_LOST
        )

    def text(self, detail: str = "") -> str:
        """What the log says: ``"session lease lost: <detail>"``."""
        return f"{self.value}: {detail}" if detail else self.value
