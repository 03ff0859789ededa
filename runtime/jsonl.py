"""Reading the run directory's JSON-lines files (events.jsonl, audit.jsonl).

Both are appended line by line while a run is live, so a reader may find a
torn last line (or one cut by a crash): it is skipped, never an error.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
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
