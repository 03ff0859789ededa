"""The static checks stay in force.

``tests/typing_fixtures/swap.py`` holds deliberate argument swaps (a price
for a quantity, a symbol for a client order id, positional prices where the
signature wants them by name); mypy, run here in a subprocess on the
project's own configuration, must refuse each one with the expected error,
and must pass the same code the right way round (``swap_ok.py``). If the
distinct types or the keyword-only signatures were loosened, or mypy lost
sight of the messages, this fails. The other checks guard how the checks
run: ``.ci/run`` type-checks and lints before the tests, and every
type-ignore comment names its error code and says why.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "typing_fixtures"
SOURCES = ("messages", "runtime", "trading", "app", "actors", "exchange", "config", "tests")

#: (line marker in swap.py, error text mypy must report on that line)
EXPECTED = [
    ("SWAP: price and quantity",
     'Argument 2 to "apply" of "Position" has incompatible type "Price"; expected "Quantity"'),
    ("SWAP: price and quantity",
     'Argument 3 to "apply" of "Position" has incompatible type "Quantity"; expected "Price"'),
    ("SWAP: symbol and client order id",
     'Argument 1 to "OrderAcked" has incompatible type "Symbol"; expected "ClientOrderId"'),
    ("SWAP: symbol and client order id",
     'Argument 3 to "OrderAcked" has incompatible type "ClientOrderId"; expected "Symbol"'),
    ("SWAP: positional spot and strike", 'Too many positional arguments for "bs_price"'),
]


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy's errors on both fixture files, by file name (one run, cache in a tmp dir)."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--follow-imports=silent",
         "--no-error-summary", "--show-error-codes", "--no-color-output",
         str(FIXTURES / "swap.py"), str(FIXTURES / "swap_ok.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert proc.returncode in (0, 1), f"mypy did not run: {proc.stderr or proc.stdout}"
    report: dict[str, list[str]] = {"swap.py": [], "swap_ok.py": []}
    for line in proc.stdout.splitlines():
        m = re.match(r".*?typing_fixtures/(swap(?:_ok)?\.py):(\d+): error: (.*)", line)
        if m:
            report[m[1]].append(f"{m[2]}: {m[3]}")
    return report


def _line_of(marker: str) -> int:
    for n, text in enumerate((FIXTURES / "swap.py").read_text().splitlines(), start=1):
        if marker in text:
            return n
    raise AssertionError(f"marker {marker!r} not in swap.py")


@pytest.mark.parametrize(("marker", "error"), EXPECTED, ids=[e for _, e in EXPECTED])
def test_the_type_check_refuses_an_argument_swap(mypy_report: dict[str, list[str]],
                                                 marker: str, error: str) -> None:
    line = _line_of(marker)
    found = [e for e in mypy_report["swap.py"] if e.startswith(f"{line}: ")]
    assert any(error in e for e in found), f"line {line}: expected {error!r}, mypy said {found}"


def test_only_the_swaps_are_errors(mypy_report: dict[str, list[str]]) -> None:
    assert mypy_report["swap_ok.py"] == []
    marked = {_line_of(marker) for marker, _ in EXPECTED}
    stray = [e for e in mypy_report["swap.py"] if int(e.split(":")[0]) not in marked]
    assert stray == []


def test_ci_runs_the_static_checks_before_the_tests() -> None:
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    mypy = next(i for i, s in enumerate(steps) if "-m mypy" in s)
    ruff = next(i for i, s in enumerate(steps) if "-m ruff check" in s)
    first_pytest = next(i for i, s in enumerate(steps) if "-m pytest" in s)
    assert mypy < first_pytest and ruff < first_pytest
    assert "-m pytest" in steps[-1]  # CI's last line is pytest's
    assert "set -euo pipefail" in steps  # a failing check stops the run


_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<rest>.*)$")
_WITH_REASON = re.compile(r"\[[a-z-]+(, *[a-z-]+)*\]\s+#\s*\S")


def _type_ignores() -> list[tuple[str, str]]:
    out = []
    files = [ROOT / "main.py"] + [p for d in SOURCES for p in (ROOT / d).rglob("*.py")]
    for path in files:
        for n, text in enumerate(path.read_text().splitlines(), start=1):
            m = _IGNORE.search(text)
            if m:
                out.append((f"{path.relative_to(ROOT)}:{n}", m["rest"]))
    return out


def test_every_type_ignore_names_its_code_and_a_reason() -> None:
    bare = [where for where, rest in _type_ignores() if not _WITH_REASON.match(rest)]
    assert bare == [], "write '# type: ignore[code]  # why' on: " + ", ".join(bare)
