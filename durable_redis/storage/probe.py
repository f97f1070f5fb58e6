"""Is Redis there? A bounded connection check for the command line.

A store retries a refused connection for ~10-20 s (the right thing for a worker riding out a
Redis restart). A person at a terminal wants to hear at once that nothing answers, and to give
up after a couple of seconds unless they asked to wait: :func:`wait_until_reachable`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import anyio
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from durable_redis.errors import StoreUnavailableError
from durable_redis.storage._url import _pop_partitions, _pop_store_params, redact_url

__all__ = ["wait_until_reachable"]

_FIRST_PAUSE_S = 0.1
_MAX_PAUSE_S = 1.0

#: ``on_retry(error, seconds_left)``: called after each failed attempt that will be retried.
OnRetry = Callable[[BaseException, float], None]


async def wait_until_reachable(
    url: str, *, timeout: float, on_retry: OnRetry | None = None
) -> None:
    """Return once a Redis server answers at ``url``; StoreUnavailableError after ``timeout`` s.

    Only an unanswered connection is retried: a server that answers with an error (a refused
    password, say) is reachable, and the command that follows reports that error itself. For
    a cluster URL the node named in it is checked.
    """
    target = _node_url(url)
    deadline = anyio.current_time() + max(timeout, 0.0)
    pause = _FIRST_PAUSE_S
    while True:
        left = deadline - anyio.current_time()
        try:
            await _ping(target, connect_timeout=min(max(left, 0.2), 2.0))
            return
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            error: BaseException = exc
        except RedisError:
            return  # it answered
        left = deadline - anyio.current_time()
        if left <= 0:
            raise StoreUnavailableError(
                f"Redis at {redact_url(url)} is unreachable (gave up after {timeout:g}s): {error}"
            ) from error
        if on_retry is not None:
            on_retry(error, left)
        await anyio.sleep(min(pause, left))
        pause = min(pause * 2, _MAX_PAUSE_S)


async def _ping(url: str, *, connect_timeout: float) -> None:
    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=connect_timeout, socket_timeout=connect_timeout, retry=None
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


def _node_url(url: str) -> str:
    url, _ = _pop_partitions(url)
    url, _ = _pop_store_params(url)
    parts = urlsplit(url)
    if "+cluster" in parts.scheme:
        parts = parts._replace(scheme=parts.scheme.replace("+cluster", ""))
    return urlunsplit(parts)
