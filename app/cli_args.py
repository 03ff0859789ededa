"""Command-line values that argparse cannot check on its own.

Each parser raises ``argparse.ArgumentTypeError`` with what was wrong, so
argparse prints ``--option: message`` and exits with code 2 (bad usage).
"""

from __future__ import annotations

import argparse
import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|h)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9._:/-]{0,31}$")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``1.5m``, ``2h``; zero, negative and unitless
    nonsense are refused."""
    m = _DURATION.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write seconds (90), or a number with s, m or h "
            "(90s, 5m, 2h)")
    seconds = float(m.group(1)) * _UNIT_S[(m.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be more than zero")
    return seconds


def parse_symbols(text: str) -> list[str]:
    """``A,B`` -> ["A", "B"] (upper-cased, duplicates refused); empty is an error,
    never "the defaults"."""
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError(
            "no symbols given (leave --symbols out for the configured ones)")
    bad = [s for s in symbols if not _SYMBOL.match(s)]
    if bad:
        raise argparse.ArgumentTypeError(f"{bad[0]!r} is not a symbol (letters and digits, "
                                         "e.g. BTCUSDT)")
    dup = next((s for s in symbols if symbols.count(s) > 1), None)
    if dup:
        raise argparse.ArgumentTypeError(f"{dup} given twice")
    return symbols
