"""Loading, layering and hashing the configuration.

Layers, later wins key by key: ``config/default.yaml`` (package data), the
user's file, then overrides (command-line options, a scenario's ``config:``
block). Nothing is read until :func:`load_config` is called (rule 14).

The hash in every audit record (DESIGN section 6) is :func:`config_hash`: a
sha256 over a canonical JSON of the *validated* values, so comments,
key order, ``0.10`` versus ``0.1`` or a default spelled out make no
difference, while any change of an effective value does.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from config.errors import ConfigError, describe
from config.schema import Config
from config.source import Source, locate, merge_sources, read_yaml

PACKAGE_DIR = Path(__file__).resolve().parent


def default_path() -> Path:
    """``config/default.yaml`` next to this package (works installed or from a clone)."""
    return PACKAGE_DIR / "default.yaml"


def load_config(path: str | Path | None = None,
                overrides: Mapping[str, Any] | Source | None = None) -> Config:
    """Defaults, then the file at ``path`` (if any), then ``overrides`` (nested mapping).

    Raises :class:`ConfigError` naming file, line and key path for every problem.
    """
    sources = [read_yaml(default_path())]
    if path is not None:
        sources.append(read_yaml(path))
    if isinstance(overrides, Source):
        sources.append(overrides)
    elif overrides:
        sources.append(Source.from_mapping(overrides))
    return build_config(sources)


def build_config(sources: Sequence[Source]) -> Config:
    """Merge ``sources`` in order and validate; errors are located in the layer that wrote them."""
    sources = list(sources)
    for src in sources:
        if not isinstance(src.data, dict):
            raise ConfigError(src.issue((), "must be a mapping of config sections"))
    merged = merge_sources(sources)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(issues_for(exc, sources)) from None


def issues_for(exc: ValidationError, sources: Sequence[Source]) -> list:
    """Every pydantic error as an Issue pinned to file and line, sorted by position."""
    issues = []
    for err in exc.errors(include_url=False):
        loc, message, anchor = describe(err)
        issues.append(locate(list(sources), loc, message, anchor))
    seen: set = set()
    unique = []
    for issue in issues:
        if (issue.file, issue.line, issue.path, issue.message) not in seen:
            seen.add((issue.file, issue.line, issue.path, issue.message))
            unique.append(issue)
    return sorted(unique, key=lambda i: (i.file, i.line or 0))


# -- hashing ----------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return {"$dec": "0" if text in ("-0", "0") else text}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return {"$float": repr(value)}
    return value


def canonical_json(config: Config) -> str:
    """Stable JSON of the validated values (sorted keys, normalised Decimals)."""
    data = _canonical(config.model_dump(mode="python"))
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(config: Config) -> str:
    """Hex sha256 of :func:`canonical_json`; identical configs give identical hashes."""
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()
