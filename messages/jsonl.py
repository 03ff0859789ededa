"""Reading and writing the files of a run directory.

events.jsonl and audit.jsonl are appended line by line while a run is live,
so a reader may find a torn last line (or one cut by a crash): it is
skipped, never an error. Whole files (summary.json, report.html, run.json)
are written to a temporary name and renamed, so a reader never sees half.
"""

from __future__ import annotations

import json
import os
from json import encoder as _json_encoder
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator


def compact_encoder(default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """``json.dumps(obj, default=default, separators=(",", ":"))``, the same
    text (ASCII, NaN allowed, keys in insertion order), from one C encoder
    built once: ``dumps`` builds a new encoder on every call. No cycle check:
    for fresh records of plain values, as both log files write."""
    make: Any = getattr(_json_encoder, "c_make_encoder", None)  # absent from the stubs
    fallback = json.JSONEncoder(default=default, separators=(",", ":"), check_circular=False)
    if make is None:  # pragma: no cover - CPython always has the C encoder
        return fallback.encode
    encode = make(None, fallback.default, _json_encoder.encode_basestring_ascii, None,
                  ":", ",", False, False, True)

    def dumps(obj: Any) -> str:
        return "".join(encode(obj, 0))
    return dumps


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every complete record of a JSON-lines file, in order."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (same directory, same filesystem)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half file behind
        raise
