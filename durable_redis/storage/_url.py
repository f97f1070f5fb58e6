"""Redis URL helpers for ``RedisStore.from_url``."""

from __future__ import annotations

from durable_redis.errors import ConfigurationError


def _pop_partitions(url: str) -> tuple[str, int | None]:
    """Split a ``partitions=P`` query parameter off a Redis URL (redis-py would reject it)."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, None
    kept, count = [], None
    for param in query.split("&"):
        key, _, value = param.partition("=")
        if key != "partitions":
            kept.append(param)
            continue
        try:
            count = int(value)
        except ValueError:
            raise ConfigurationError(f"partitions must be a whole number, got {value!r}") from None
    return (f"{base}?{'&'.join(kept)}" if kept else base), count
