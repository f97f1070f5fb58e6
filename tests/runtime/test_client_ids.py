from __future__ import annotations

import pytest

from durable_redis.client import MAX_ID_BYTES, Client, validate_id
from durable_redis.core import App, OrchestrationContext
from durable_redis.errors import InvalidIdError, NotRegisteredError
from durable_redis.storage.redis_store import RedisStore


@pytest.mark.parametrize(
    "bad",
    ["", "x" * (MAX_ID_BYTES + 1), "é" * 129, "a{b", "a}b", "a\nb", "a\rb", "a\0b", "\ud800", 7],
)
def test_invalid_ids_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidIdError):
        validate_id(bad)


@pytest.mark.parametrize("good", ["a", "order:42/β", "x" * MAX_ID_BYTES, "with space"])
def test_valid_ids_pass(good: str) -> None:
    assert validate_id(good) == good


@pytest.mark.anyio
async def test_a_client_with_an_app_refuses_names_the_app_does_not_know(store: RedisStore) -> None:
    app = App("names")

    @app.orchestration
    async def known(ctx: OrchestrationContext) -> str:
        return "ok"

    client = Client(store, app)
    with pytest.raises(NotRegisteredError, match="'unknown'"):
        await client.start("unknown")
    assert (await store.list_instances()).instances == []  # nothing was written
    assert await client.start("known", instance_id="k") == "k"
    # without an app the workers decide (they back off until one knows the name)
    assert await Client(store).start("unknown", instance_id="u") == "u"
