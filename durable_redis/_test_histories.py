"""Recorded histories as files and lists: save, load, replay against current code.

Shared by ``durable_redis.testing`` (which re-exports them) and the replay gate
(``_replay_gate``), so neither imports the other's module at call time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import msgpack  # type: ignore[import-untyped]

from durable_redis.core import (
    App,
    Codec,
    HistoryEvent,
    ReplayResult,
    decode_event,
    encode_event,
    replay,
)
from durable_redis.errors import CodecError

__all__ = ["HistorySource", "load_history", "replay_history", "save_history"]


HistorySource = Sequence[HistoryEvent] | Sequence[bytes] | str | Path


def save_history(path: str | Path, events: Iterable[HistoryEvent]) -> None:
    """Write events to a file (a msgpack list of encoded events)."""
    Path(path).write_bytes(msgpack.packb([encode_event(e) for e in events], use_bin_type=True))


def load_history(source: HistorySource) -> list[HistoryEvent]:
    """Events from a file, a list of encoded events, or a list of events."""
    if isinstance(source, str | Path):
        try:
            raw = msgpack.unpackb(Path(source).read_bytes(), raw=False)
        except (ValueError, msgpack.ExtraData) as exc:
            raise CodecError(f"{source}: not a history file: {exc}") from exc
        if not isinstance(raw, list):
            raise CodecError(f"{source}: not a history file")
        source = raw
    return [decode_event(e) if isinstance(e, bytes) else e for e in source]


def replay_history(app: App, history: HistorySource, *, codec: Codec | None = None) -> ReplayResult:
    """Replay a recorded execution against the current code; the result reports divergence."""
    return replay(app, load_history(history), codec=codec)
