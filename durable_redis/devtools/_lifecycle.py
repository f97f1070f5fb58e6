"""The context-manager half every devtools process owner shares: ``with`` ends in ``stop()``."""

from __future__ import annotations

from types import TracebackType


class StopOnExit:
    """A ``with`` block's end calls :meth:`stop` (each subclass says what entering does)."""

    def stop(self) -> object:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
