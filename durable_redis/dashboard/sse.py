"""``GET /instances/{id}/stream``: an instance's progress stream as server-sent events.

Each entry is one ``item`` event whose ``id`` is its stream offset and whose ``data`` is the
value as JSON; a browser's ``EventSource`` resends the last id as ``Last-Event-ID`` when it
reconnects, so nothing is lost or repeated. The response starts after that header's offset, else
after ``?from=`` (default ``0``: the whole stream), follows new entries as they are appended,
sends a ``: keep-alive`` comment every ~15 s of silence, and once the instance has ended and
everything is read sends one ``end`` event (``{"status": ...}``) and closes.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from durable_redis._client_messaging import follow_stream
from durable_redis._render import plain
from durable_redis.core import Codec

__all__ = ["events", "start_offset"]

_OFFSET = re.compile(r"\d{1,20}(-\d{1,20})?")
_KEEPALIVE_EVERY = 15  # idle waits (about a second each)


def start_offset(last_event_id: str | None, from_param: str | None) -> str | None:
    """Where to start: ``Last-Event-ID``, else ``?from=``, else "0"; None if malformed."""
    offset = (last_event_id or "").strip() or (from_param or "").strip() or "0"
    return offset if _OFFSET.fullmatch(offset) else None


def _data(codec: Codec, data: bytes) -> str:
    try:
        value = plain(codec.decode(data))
    except Exception as exc:  # another codec, or a corrupted entry: say so, keep streaming
        value = {"undecodable": f"{type(exc).__name__}: {exc}", "bytes": len(data)}
    return json.dumps(value, ensure_ascii=False, default=str)


async def events(store: Any, codec: Codec, instance_id: str, after: str) -> AsyncIterator[str]:
    """The event-stream text, chunk by chunk."""
    yield "retry: 2000\n\n"
    idle = 0
    async for row in follow_stream(store, instance_id, after):
        if row is None:
            idle += 1
            if idle >= _KEEPALIVE_EVERY:
                idle = 0
                yield ": keep-alive\n\n"
            continue
        idle = 0
        offset, data = row
        yield f"id: {offset}\nevent: item\ndata: {_data(codec, data)}\n\n"
    info = await store.get_instance(instance_id)
    status = info.status.value if info is not None else "purged"
    yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
