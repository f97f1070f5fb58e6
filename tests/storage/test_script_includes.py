"""A script gets the helpers of its includes that it uses, and every one of them.

``scripts._inline_includes`` keeps a definition of an include when the script, or a definition
kept already, names it. A dropped helper that a script still calls would fail only when that
line runs (Redis refuses undeclared globals), so the check is static, over every script: each
name an include defines and a script's text mentions is defined in that text.
"""

from __future__ import annotations

import re

import pytest

from durable_redis.storage.scripts import (
    _TOP_DEFINITION,
    _WORD,
    SCRIPTS,
    _defined_names,
    _inline_includes,
    load_script_source,
    lua_dir,
)

INCLUDES = {p.stem: p.read_text(encoding="utf-8") for p in (lua_dir() / "includes").glob("*.lua")}


def defined_names(text: str) -> set[str]:
    names: set[str] = set()
    for m in _TOP_DEFINITION.finditer(text):
        names |= _defined_names(m)
    return names


ALL_HELPERS = set().union(*(defined_names(t) for t in INCLUDES.values()))
_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.S)


def code_words(text: str) -> set[str]:
    """The words of ``text`` outside its comments (a helper named in a comment is not used)."""
    return set(_WORD.findall(_COMMENT.sub("", text)))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("test_clock", [False, True])
def test_every_helper_a_script_calls_is_in_its_text(name: str, test_clock: bool) -> None:
    source = load_script_source(name, test_clock=test_clock)
    named = code_words(source) & ALL_HELPERS
    missing = named - defined_names(source)
    assert not missing, missing


def test_unused_helpers_are_left_out_and_the_used_ones_kept_in_order() -> None:
    include = (
        "-- preamble\n\n"
        "local A = 1\n\n"
        "-- b uses A\n"
        "local function b()\n  return A\nend\n\n"
        "local function c()\n  return 2\nend\n\n"
        "local function d()\n  return b()\nend\n"
    )
    text = _inline_includes("-- @include x\nreturn d()\n", {"x": include})
    assert text == (
        "-- preamble\n\n"
        "local A = 1\n\n"
        "-- b uses A\n"
        "local function b()\n  return A\nend\n\n"
        "local function d()\n  return b()\nend\n"
        "\nreturn d()\n"
    )


def test_a_script_of_few_helpers_is_far_smaller_than_with_all_of_common() -> None:
    source = load_script_source("renew_jobs")
    assert "local function flow_take" not in source
    assert "local function server_now" in source
    assert len(source) < len(INCLUDES["common"]) / 2


def test_the_test_clock_goes_into_server_now_before_the_pruning() -> None:
    source = load_script_source("claim_orchestration", test_clock=True)
    assert re.search(r"local function server_now\(\).*clock_offset.*?\nend\n", source, re.S)
