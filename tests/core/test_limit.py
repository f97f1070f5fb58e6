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
