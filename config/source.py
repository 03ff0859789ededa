"""YAML with line numbers, and the layering of config sources.

PyYAML throws line numbers away once it builds Python objects, yet an error
that says only "max_order_size is invalid" sends an operator hunting through
three files. So a document is composed to nodes first, walked once to record
the line of every mapping key and list item by key path, and only then
constructed. A :class:`Source` keeps the data, that side map and the file
name together, so an error found later, after merging defaults, a user file
and overrides, can still be pinned to the exact file and line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping

import yaml

from config.errors import ConfigError, Issue, Loc, format_path

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 64


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~5x faster


class _LineLoader(_Base):  # type: ignore[misc, valid-type]  # the base is chosen at import (C loader if built)
    """A safe loader (no arbitrary objects); a subclass so we never patch PyYAML's own."""


@dataclass(frozen=True)
class Source:
    """One layer of configuration: data plus where each key path was written.

    ``prefix`` is the key path of ``data`` inside its file (``("config",)`` for
    the ``config:`` block of a scenario), so messages show the path the user
    actually typed.
    """

    name: str
    data: Any
    lines: Mapping[Loc, int] = field(default_factory=dict)
    prefix: Loc = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, name: str = "<overrides>") -> Source:
        return cls(name, dict(data or {}), {})

    def sub(self, key: str) -> Source:
        """The sub-tree at ``key`` with its own line map (empty mapping if absent)."""
        data = self.data.get(key) if isinstance(self.data, dict) else None
        n = 1
        lines = {p[n:]: ln for p, ln in self.lines.items() if p[:n] == (key,)}
        return Source(self.name, {} if data is None else data, lines, self.prefix + (key,))

    def line_of(self, loc: Loc) -> int | None:
        return self.lines.get(tuple(loc))

    def issue(self, loc: Loc, message: str) -> Issue:
        """An issue at ``loc`` (or the nearest enclosing key that has a line)."""
        loc = _as_written(self.data, tuple(loc))
        for n in range(len(loc), -1, -1):
            line = self.lines.get(loc[:n])
            if line is not None:
                break
        return Issue(self.name, line, format_path(self.prefix + loc), message)


def _as_written(data: Any, loc: Loc) -> Loc:
    """Drop list indexes a validator added where the file has a single mapping
    (a "one or many" value written as one): ``set_position[0].qty`` -> ``set_position.qty``."""
    out: list[Any] = []
    for part in loc:
        if isinstance(part, int) and isinstance(data, dict) and part not in data:
            continue
        out.append(part)
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            data = None
    return tuple(out)


def display_name(path: Path) -> str:
    """The path as a person would type it: relative to the working directory if inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_yaml(path: str | Path) -> Source:
    """Read and parse a YAML file into a :class:`Source`; errors name file and line."""
    p = Path(path)
    name = str(path) if not p.is_absolute() else display_name(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(Issue(name, None, "", f"cannot read file: {exc.strerror or exc}")) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(Issue(name, None, "", f"not UTF-8 text: {exc.reason}")) from None
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> Source:
    """Parse YAML text, recording the line of each key; the top level must be a mapping."""
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Source(name, {}, {(): 1})
        lines: dict[Loc, int] = {(): node.start_mark.line + 1}
        issues: list[Issue] = []
        _walk(loader, node, (), lines, issues, name, 0)
        if issues:
            raise ConfigError(issues)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "malformed YAML"
        raise ConfigError(Issue(name, line, "", f"YAML syntax error: {problem}")) from None
    except yaml.YAMLError as exc:
        raise ConfigError(Issue(name, None, "", f"YAML syntax error: {exc}")) from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(Issue(name, lines[()], "", "the top level must be a mapping of keys"))
    return Source(name, data, lines)


def _walk(loader: _LineLoader, node: yaml.Node, path: Loc, lines: dict[Loc, int],
          issues: list[Issue], name: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        issues.append(Issue(name, node.start_mark.line + 1, format_path(path),
                            f"nested deeper than {_MAX_DEPTH} levels (recursive alias?)"))
        return
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for knode, _ in node.value:
            if knode.tag == _MERGE_TAG:
                continue
            key = loader.construct_object(knode, deep=True)
            line = knode.start_mark.line + 1
            try:
                if key in seen:
                    issues.append(Issue(name, line, format_path(path + (key,)),
                                        f"duplicate key (first given on line {seen[key]})"))
                seen.setdefault(key, line)
            except TypeError:  # unhashable key: reported below
                pass
        loader.flatten_mapping(node)
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            line = knode.start_mark.line + 1
            if not isinstance(key, str):
                hint = " (YAML reads yes/no/on/off as booleans: quote the key)" \
                    if isinstance(key, bool) else ""
                issues.append(Issue(name, line, format_path(path),
                                    f"key {key!r} is not a string{hint}"))
                continue
            lines[path + (key,)] = line
            _walk(loader, vnode, path + (key,), lines, issues, name, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(loader, item, path + (i,), lines, issues, name, depth + 1)


# -- layering -------------------------------------------------------------------


def deep_merge(base: Any, top: Any) -> Any:
    """Mappings merge key by key (recursively); anything else in ``top`` replaces ``base``.

    Lists replace rather than append, so an override of ``market.symbols``
    means exactly the symbols written, never the defaults plus those.
    """
    if isinstance(base, dict) and isinstance(top, dict):
        out = {k: _copy(v) for k, v in base.items()}
        for key, value in top.items():
            out[key] = deep_merge(base[key], value) if key in base else _copy(value)
        return out
    return _copy(top)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def merge_sources(sources: Iterable[Source]) -> Any:
    merged: Any = {}
    for src in sources:
        merged = deep_merge(merged, src.data)
    return merged


def _has_path(data: Any, loc: Loc) -> bool:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def locate(sources: list[Source], loc: Loc, message: str, anchor: int | None = None) -> Issue:
    """Pin an error at merged key path ``loc`` to the source that supplied it.

    The value in effect at a path comes from the last layer that wrote that
    path; a path no layer wrote (a missing key) is reported at its nearest
    written parent. With ``anchor`` (a cross-field check of the model at
    ``loc[:anchor]``) the last layer that touched that model is blamed.
    """
    loc = tuple(loc)
    if anchor:
        for src in reversed(sources):
            if _has_path(src.data, loc[:anchor]):
                return src.issue(loc, message)
    for n in range(len(loc), -1, -1):
        head = loc[:n]
        for src in reversed(sources):
            if _has_path(src.data, head) and (head in src.lines or not src.lines):
                return src.issue(loc, message)
    first = sources[-1] if sources else Source("<config>", {})
    return first.issue(loc, message)
