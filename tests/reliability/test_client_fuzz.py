"""Hypothesis drives the client API with random inputs: every failure is a DurableRedisError.

Ids and names are any text (surrogates included), bytes, numbers or None; payloads are any
msgpack-able tree, or unencodable, or over the size limit; filters, limits, cursors, timeouts and
execution ids are random. Real Redis, one namespace for the whole run.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_redis.client import Client
from durable_redis.errors import DurableRedisError
from tests.reliability import rel_app

pytestmark = [pytest.mark.timeout(300)]

MIB = 1 << 20
NAMESPACE = f"fuzz-{uuid.uuid4().hex[:8]}"

any_text = st.text(st.characters(exclude_categories=()), max_size=40)
ids = st.one_of(
    any_text,
    st.text(max_size=300),
    st.sampled_from(["", "a{b}", "}{", "x:y", "line\nbreak", "nul\x00", "\udcff", "é" * 200]),
    st.binary(max_size=8),
    st.integers(),
    st.none(),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True),
    any_text,
    st.binary(max_size=32),
)
payloads = st.one_of(
    st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(any_text, children, max_size=4)
        ),
        max_leaves=12,
    ),
    st.just(object()),
    st.sets(st.integers(), max_size=3),
    st.just(b"x" * (MIB + 1)),
)
names = st.one_of(st.sampled_from(["echo", "wait_event", "no_such_orchestration"]), ids)
statuses = st.one_of(
    st.sampled_from(["pending", "running", "completed", "failed", "cancelled"]), any_text, st.none()
)

Op = Callable[[Client], Awaitable[Any]]

ops: st.SearchStrategy[Op] = st.one_of(
    st.builds(lambda n, p, i: lambda c: c.start(n, p, instance_id=i), names, payloads, ids),
    st.builds(lambda i, e, p: lambda c: c.raise_event(i, e, p), ids, ids, payloads),
    st.builds(lambda i, r: lambda c: c.cancel(i, r), ids, any_text),
    st.builds(lambda i: lambda c: c.get_status(i), ids),
    st.builds(
        lambda i, t: lambda c: c.wait_for_completion(i, timeout=t),
        ids,
        st.floats(min_value=-1, max_value=0.05),
    ),
    st.builds(lambda i, f: lambda c: c.purge(i, force=f), ids, st.booleans()),
    st.builds(lambda i, e: lambda c: c.get_history(i, e), ids, st.one_of(st.none(), st.integers())),
    st.builds(
        lambda s, n, lim, cur: lambda c: c.list_instances(status=s, name=n, limit=lim, cursor=cur),
        statuses,
        st.one_of(st.none(), any_text),
        st.integers(min_value=-5, max_value=500),
        st.one_of(st.none(), any_text, st.sampled_from(["0", "-1", "999999999999", "0:x"])),
    ),
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(ops, min_size=1, max_size=6))
def test_client_api_fails_only_with_durable_redis_errors(
    redis_url: str, sequence: list[Op]
) -> None:
    async def body() -> None:
        async with Client.from_url(redis_url, namespace=NAMESPACE, app=rel_app.app) as client:
            for op in sequence:
                try:
                    await op(client)
                except DurableRedisError as exc:
                    assert str(exc), f"{type(exc).__name__} without a message"

    anyio.run(body)
