"""Trusted construction of the engine's hot-path event messages.

Message constructors validate every field (``__post_init__``), which is what
keeps bad input out everywhere else. The matching engine builds its acks and
fills only from values it has already validated (a checked ``OrderRequest``,
exact Decimal arithmetic, an aware ``now``), so on the hot path it may skip
that second check: this is what lets the in-process exchange reach its
orders/s target. ``strict=True`` runs the full validation anyway (the test
suite does), so a bug here cannot hide.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

_set = object.__setattr__
_new = object.__new__


def maker(cls: type, *, strict: bool = False) -> Callable[..., Any]:
    """A positional constructor for ``cls`` taking every field in order."""
    if strict:
        return cls
    names = tuple(f.name for f in dataclasses.fields(cls))
    count = len(names)

    def make(*values: Any) -> Any:
        if len(values) != count:
            raise TypeError(f"{cls.__name__} needs {count} values, got {len(values)}")
        obj = _new(cls)
        for name, value in zip(names, values):
            _set(obj, name, value)
        return obj

    make.__name__ = f"make_{cls.__name__}"
    return make
