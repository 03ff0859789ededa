"""Redaction of secrets in anything shown to people (logs, /actors, reports)."""

from __future__ import annotations

import re

_SECRET_FIELD = re.compile(
    r"(?i)\b([\w-]*(?:token|secret|password|passwd|api_?key|apikey|private_?key|signature)[\w-]*)"
    r"(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s,)}]+)"
)


def redact_text(text: str) -> str:
    """Replace the value of any token/secret/password/api-key-like field with ***."""
    return _SECRET_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}'***'", text)
