"""``Limit``: flow control's typed options, checked when made (before anything is written),
the key taken from the input, and the stored form the job scripts read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from durable_redis import Limit
from durable_redis.errors import InvalidIdError, ValidationError


@dataclass
class Order:
    tenant: str
    n: int


def test_the_key_from_a_string_a_template_or_a_function() -> None:
    assert Limit(key="fixed").key_for({"tenant": "a"}) == "fixed"
    assert Limit(key="tenant:{tenant}").key_for({"tenant": "a"}) == "tenant:a"
    assert Limit(key="t:{tenant}/{n}").key_for(Order("b", 3)) == "t:b/3"  # attributes too
    assert Limit(key=lambda x: f"user-{x['id']}").key_for({"id": 7}) == "user-7"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("t:{tenant}", {"other": 1}),  # the template does not fit the input
        ("t:{tenant}", 5),
    ],
)
def test_a_template_that_does_not_fit_is_refused(key: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Limit(key=key).key_for(value)


@pytest.mark.parametrize("bad", ["", "a\nb", "x" * 300, 5, None])
def test_a_key_must_be_a_usable_string(bad: Any) -> None:
    with pytest.raises(InvalidIdError):
        Limit(key=lambda _: bad).key_for(None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"concurrency": True},
        {"rate": -1},
        {"rate": 5, "per": 0},
        {"burst": 0},
        {"debounce": 1, "throttle": 1},
        {"debounce": -1},
        {"throttle": "1s"},
        {"per": float("nan")},
    ],
)
def test_bad_limits_are_refused_when_made(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Limit(key="k", **kwargs)
    with pytest.raises(ValidationError):
        Limit(key="", concurrency=1)


def test_the_stored_form() -> None:
    assert Limit(key="k").flow == "- - - 1"
    assert Limit(key="k", concurrency=5).flow == "5 - - 1"
    assert Limit(key="k", rate=100, per=timedelta(minutes=1), burst=10).flow == "- 100 60000 10"
    assert Limit(key="k", debounce=0.25).mode == "debounce 250"
    assert Limit(key="k", throttle=timedelta(hours=1)).mode == "throttle 3600000"
    assert Limit(key="k").mode == ""


def test_the_start_mode_of_an_orchestration_start() -> None:
    assert Limit(key="k", concurrency=1).start_mode == "singleton"
    assert Limit(key="k", debounce=2).start_mode == "debounce 2000"
    assert Limit(key="k", throttle=timedelta(minutes=1)).start_mode == "throttle 60000"


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # nothing to apply
        {"concurrency": 2},
        {"rate": 5},
        {"concurrency": 1, "debounce": 1},
        {"concurrency": 1, "throttle": 1},
    ],
)
def test_a_start_takes_exactly_one_of_singleton_debounce_throttle(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Limit(key="k", **kwargs).start_mode  # noqa: B018


def test_a_bad_start_limit_is_refused_at_registration() -> None:
    from durable_redis import App, OrchestrationContext
    from durable_redis.errors import RegistrationError

    app = App("x")
    with pytest.raises(RegistrationError):

        @app.orchestration(limit=Limit(key="k", concurrency=3))
        async def wf(ctx: OrchestrationContext, _: None) -> None: ...

    with pytest.raises(RegistrationError):

        @app.orchestration(limit="singleton")  # type: ignore[arg-type]
        async def wf2(ctx: OrchestrationContext, _: None) -> None: ...


@pytest.mark.anyio
async def test_a_debounced_start_takes_no_start_at_and_nothing_is_written() -> None:
    from datetime import UTC, datetime

    import fakeredis

    from durable_redis import App, Client, OrchestrationContext
    from durable_redis.storage import RedisStore

    app = App("x")

    @app.orchestration(limit=Limit(key="k", debounce=1))
    async def wf(ctx: OrchestrationContext, _: None) -> None: ...

    store = RedisStore(fakeredis.FakeAsyncRedis(), namespace="limit-unit", owns_client=True)
    async with Client(store, app) as client:
        with pytest.raises(ValidationError):
            await client.start(wf, None, start_at=datetime.now(UTC))
        with pytest.raises(ValidationError):
            await client.start(wf, None, limit=Limit(key="k", rate=3))
        assert (await client.list_instances()).instances == []
