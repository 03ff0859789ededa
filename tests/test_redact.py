"""Secrets are masked in text shown to people, and a masked JSON line stays JSON."""

from __future__ import annotations

import json

import pytest

from runtime.redact import redact_text


@pytest.mark.parametrize("text, secret", [
    ("token=canary-1 rest", "canary-1"),
    ("password: canary-2", "canary-2"),
    ("API_KEY='canary-3'", "canary-3"),
    ("webhook_secret=\"canary-4\"", "canary-4"),
    ("privateKey=canary-5", "canary-5"),
    ("\u017fecret=canary-6", "canary-6"),  # long s: IGNORECASE matches it, the pre-check must too
])
def test_key_value_secrets_are_masked(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out and "***" in out


def test_json_secrets_are_masked_and_the_line_is_still_json() -> None:
    rec = {"api_key": "canary-a", "inputs": {"Token": 'with "quotes" and \\ inside'},
           "after": 2, "kind": "risk_decision"}
    line = json.dumps(rec, separators=(",", ":"))
    out = redact_text(line)
    back = json.loads(out)
    assert back == {"api_key": "***", "inputs": {"Token": "***"}, "after": 2,
                    "kind": "risk_decision"}


def test_text_without_secret_words_is_returned_unchanged() -> None:
    line = json.dumps({"kind": "risk_decision", "inputs": {"symbol": "BTCUSDT", "qty": "1"}})
    assert redact_text(line) is line
