"""Redis URL helpers for ``RedisStore.from_url``."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

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


# query parameters of a Redis URL that are store options, not redis-py's (RedisStore.from_url)
STORE_PARAMS = ("scripts", "durability", "replica_timeout")


def _pop_store_params(url: str) -> tuple[str, dict[str, str]]:
    """Split the ``STORE_PARAMS`` query parameters off a Redis URL (``?scripts=functions``,
    ``?durability=replicated``), so every process given the URL gets the same store options."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    kept, found = [], {}
    for param in query.split("&"):
        key, _, value = param.partition("=")
        if key in STORE_PARAMS:
            found[key] = value
        else:
            kept.append(param)
    return (f"{base}?{'&'.join(kept)}" if kept else base), found


def redact_url(url: str) -> str:
    """``url`` without its password (for printing)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
