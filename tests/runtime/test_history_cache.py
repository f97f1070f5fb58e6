"""The runtime's decoded-history cache: reuses decoded events only for identical bytes."""

from __future__ import annotations

from durable_redis import core
from durable_redis.core import events as ev
from durable_redis.runtime._bridge import HistoryCache


def _raw(*ids: int) -> list[bytes]:
    return [
        core.encode_event(ev.TimerCreated(event_id=i, timestamp_ms=i, fire_at_ms=i * 10))
        for i in ids
    ]


def test_cache_decodes_only_the_new_tail_and_checks_the_prefix() -> None:
    cache = HistoryCache()
    first = cache.decode("a", _raw(1, 2))
    assert [e.event_id for e in first] == [1, 2]
    again = cache.decode("a", _raw(1, 2, 3))
    assert [e.event_id for e in again] == [1, 2, 3]
    assert again[0] is first[0] and again[1] is first[1]  # reused, not decoded again
    # a different history under the same id (re-created, continued): decoded from the mismatch
    changed_second = ev.TimerCreated(event_id=2, timestamp_ms=99, fire_at_ms=5)
    other = [*_raw(1), core.encode_event(changed_second)]
    changed = cache.decode("a", other)
    assert changed[0] is first[0] and changed[1].timestamp_ms == 99
    assert [e.event_id for e in cache.decode("a", [])] == []
    assert [e.event_id for e in cache.decode("a", _raw(7))] == [7]


def test_cache_is_bounded() -> None:
    cache = HistoryCache(max_instances=2, max_events=3)
    for iid in ("a", "b", "c"):
        cache.decode(iid, _raw(1))
    assert set(cache._entries) == {"b", "c"}
    cache.decode("d", _raw(1, 2, 3, 4))  # too long to keep
    assert "d" not in cache._entries
    returned = cache.decode("b", _raw(1))
    returned.append("x")  # type: ignore[arg-type]  # callers may mutate what they get
    assert len(cache.decode("b", _raw(1))) == 1
