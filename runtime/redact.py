"""Redaction of secrets in anything shown to people (logs, /actors, reports)."""

from __future__ import annotations

import re

#: a field whose name contains one of these (any case) has its value masked
_WORDS = ("token", "secret", "password", "passwd", "api_key", "apikey", "private_key",
          "privatekey", "signature")

#: ``name=value``, ``name: value`` and JSON's ``"name": "value"`` (the quote
#: closing the name is group 2's optional leading ``"``).
_SECRET_FIELD = re.compile(
    r"(?i)\b([\w-]*(?:" + "|".join(_WORDS) + r")[\w-]*)"
    r"(\"?\s*[=:]\s*)('[^']*'|\"(?:[^\"\\]|\\.)*\"|[^\s,)}]+)"
)


def _mask(m: re.Match[str]) -> str:
    # A double-quoted value stays double-quoted, so a redacted JSON line
    # (the audit trail) is still valid JSON.
    value = m.group(3)
    masked = '"***"' if value.startswith('"') else "'***'"
    return f"{m.group(1)}{m.group(2)}{masked}"


def might_hold_secret(text: str) -> bool:
    """False when :func:`redact_text` would certainly leave ``text`` as it is.

    Every match contains one of _WORDS. Looking for them first is a plain
    substring scan; the pattern itself backtracks at every word boundary and
    cost ~100 us on each audit record (one per risk decision). One scan of
    many lines joined costs less than a scan of each.
    casefold, not lower: it folds every letter that IGNORECASE matches (the
    long s of "ſecret" too), so the check never skips text the pattern masks."""
    folded = text.casefold()
    return any(w in folded for w in _WORDS)


def redact_text(text: str) -> str:
    """Replace the value of any token/secret/password/api-key-like field with ***."""
    if not might_hold_secret(text):
        return text
    return _SECRET_FIELD.sub(_mask, text)
