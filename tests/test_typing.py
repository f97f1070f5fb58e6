"""``mypy --strict`` over typed user code: wrong input types are errors, results are typed from
the annotations (``tests/typing_snippets``: a good file with ``assert_type`` checks, and a bad
file whose lines marked ``# error`` must each be reported)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = Path(__file__).resolve().parent / "typing_snippets"


def mypy_errors(*paths: Path, cwd: Path = ROOT) -> dict[tuple[str, int], str]:
    """{(file name, line): message} of every error mypy --strict reports."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, paths)],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    errors = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^(.+?):(\d+): error: (.*)$", line)
        if match:
            errors[(Path(match.group(1)).name, int(match.group(2)))] = match.group(3)
    return errors


def test_typed_code_passes_strict_and_bad_inputs_are_errors() -> None:
    good, bad = SNIPPETS / "typed_good.py", SNIPPETS / "typed_bad.py"
    errors = mypy_errors(good, bad)
    assert [k for k in errors if k[0] == good.name] == [], errors
    marked = {
        number
        for number, text in enumerate(bad.read_text().splitlines(), start=1)
        if text.rstrip().endswith("# error")
    }
    assert len(marked) == 6
    reported = {line for name, line in errors if name == bad.name}
    assert reported == marked, errors
