"""One error type for every bad configuration or scenario file.

An operator who mistypes a limit at 3 a.m. must see *where* the mistake is,
not a stack trace: every problem is an :class:`Issue` naming the file, the
line and the key path, and :class:`ConfigError` carries all of them, so a
file with three mistakes is fixed in one edit rather than three runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from collections.abc import Iterable, Mapping

Loc = tuple[Any, ...]


def format_path(parts: Iterable[Any]) -> str:
    """``("timeline", 3, "quote", "bid")`` -> ``timeline[3].quote.bid``."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Issue:
    """One problem: ``file:line: key.path: message``."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(ValueError):
    """A configuration or scenario file is invalid. ``issues`` lists every problem."""

    def __init__(self, issues: Issue | str | Iterable[Issue]) -> None:
        if isinstance(issues, str):
            issues = [Issue("<config>", None, "", issues)]
        elif isinstance(issues, Issue):
            issues = [issues]
        self.issues: list[Issue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid configuration")


# -- turning pydantic errors into readable sentences ---------------------------

_COMPARE = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
            "less_than_equal": "<="}
_PREFIXES = ("Value error, ", "Assertion failed, ")
#: A model-level validator may name the key it is about: ``"max_s: must be ..."``.
_NAMED = re.compile(r"^([A-Za-z_]\w*(?:\.\w+)*): (.+)$", re.S)
_SECRETISH = re.compile(r"(?i)(token|secret|password|passwd|api_?key|private_?key|chat_?id)")


def show_value(value: Any) -> str:
    """A short, YAML-like rendering of an offending value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        text = str(value)
    elif isinstance(value, str):
        text = repr(value)
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(err: Mapping[str, Any]) -> tuple[Loc, str, int | None]:
    """(location, sentence, anchor) for one entry of ``ValidationError.errors()``.

    ``anchor`` is set for a cross-field error of a model validator that names
    its key: it is the length of the model's own location, so the error can
    be blamed on the layer that last touched that model (the user's edit),
    not on the defaults that merely supplied the named key.
    """
    loc: Loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    value = err.get("input")
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
        return loc, f"key {show_value(value)} is not valid: {msg}", None
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        hint = ""
        if _SECRETISH.search(name) and not name.endswith("_env"):
            hint = (" (secrets are never written in config files: give the NAME of an "
                    "environment variable in a *_env key instead)")
        return loc, f"unknown key{hint}", None
    if kind == "missing":
        return loc, "required key is missing", None
    if kind in _COMPARE:
        bound = next(iter((err.get("ctx") or {}).values()), "?")
        return loc, f"{show_value(value)} is not valid: must be {_COMPARE[kind]} {bound}", None
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return loc, f"{show_value(value)} is not valid: must be a mapping of keys to values", None
    if kind == "value_error" and isinstance(value, dict):
        named = _NAMED.match(msg)
        if named:
            return loc + tuple(named.group(1).split(".")), named.group(2), len(loc)
        return loc, msg, None
    msg = msg.replace("Input should be", "must be").replace("input should be", "must be")
    if kind == "literal_error":
        msg = msg.replace("'", "")
    return loc, f"{show_value(value)} is not valid: {msg}", None
