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


@pytest.mark.timeout(180)
def test_venue_keys_never_reach_logs_audit_metrics_actors_or_run_files(tmp_path) -> None:
    """A canary key and secret through a real ``run --venue`` against the Binance
    face: the run authenticates with them (it trades), yet neither string is in
    the run's output, any file of its directory (run.log, audit, summary,
    run.json, the LMDB store, report), /actors or /metrics."""
    import time
    import urllib.request

    from exchange.binance_face.auth import ApiKey
    from exchange.binance_face.server import BinanceFaceServer
    from exchange.feed import RandomWalkFeed
    from tests.ccxt_face import free_port, run_venue

    key, secret = "TWCANARYKEY7f3a9c2e", "TWCANARYSECRET5d1b8e44"
    face = BinanceFaceServer(symbols=["BTCUSDT"], out_dir=tmp_path / "face",
                             keys=(ApiKey(key, secret, "default"),),
                             feed=RandomWalkFeed(["BTCUSDT"], seed=5), feed_interval_s=0.1)
    face.start()
    port = free_port()
    pages: dict[str, str] = {}

    def read_endpoint() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                actors = urllib.request.urlopen(f"http://127.0.0.1:{port}/actors?peek=5",
                                                timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            if '"connected": true' in actors or '"connected":true' in actors:
                pages["actors"] = actors
                pages["metrics"] = urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                return
            time.sleep(0.2)

    try:
        rc, output, run_dir = run_venue(tmp_path, face, key=key, secret=secret, duration=5,
                                        symbols="BTCUSDT", control_port=port,
                                        during=read_endpoint)
    finally:
        face.stop()
    assert rc == 0, output[-2000:]
    assert set(pages) == {"actors", "metrics"}, "the control endpoint was read while connected"
    texts = {"output": output, **pages}
    for path in run_dir.rglob("*"):
        if path.is_file():
            texts[str(path.relative_to(run_dir))] = path.read_bytes().decode("latin-1")
    assert "run.log" in texts and "audit.jsonl" in texts and "run.json" in texts
    for name, text in texts.items():
        for canary in (key, secret):
            assert canary not in text, f"{canary[:12]}... found in {name}"
