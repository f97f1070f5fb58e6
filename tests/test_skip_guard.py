"""The suite's skip guard (tests/conftest.py): a skip that may hide a missing capability fails
the run; a skip whose reason starts with ``not applicable:`` does not."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")


def test_a_skip_for_a_missing_server_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        """
        import pytest

        def test_needs_a_server():
            pytest.skip("no redis-server binary")

        def test_passes():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*skips that may hide a missing capability*", "*test_needs_a_server: no redis-server*"]
    )


def test_a_not_applicable_skip_passes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.skipif(True, reason="not applicable: another platform")
        def test_elsewhere():
            pass

        def test_passes():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=1)
