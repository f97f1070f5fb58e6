from __future__ import annotations

import pytest

from durable_redis.client import MAX_ID_BYTES, validate_id
from durable_redis.errors import InvalidIdError


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
