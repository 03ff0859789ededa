"""A full disk during ``main.py run``, on a real (tiny) filesystem: fail closed,
one CRITICAL alert, an orderly stop, the summary shown where it cannot be
written, exit code 3 (DESIGN section 8). Needs root to mount a tmpfs; skipped
otherwise (``test_runtime_supervision`` covers the kernel's part anywhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.run_end import SUMMARY_ON_STDOUT
from tests.ws_runs import ROOT, count

FAST = ("control: {enabled: false}\n"
        "market: {tick_interval_ms: 20, bar_interval_s: 0.5}\n"
        "risk: {max_volatility: \"1\"}\n"
        "strategy: {params: {stop_pct: 0.001}}\n"
        "demo: {groups: {every_s: 0.5}}\n")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


@pytest.mark.timeout(120)
def test_a_full_disk_halts_the_run_in_order_with_exit_code_3(tiny_disk: Path,
                                                             tmp_path: Path) -> None:
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST, encoding="utf-8")
    out = tiny_disk / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run", "--config", str(cfg),
                             "--duration", "90", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while count(out / "events.jsonl", "order_acked") < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        _fill(tiny_disk)
        filled = time.monotonic()
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - filled
    assert proc.returncode == 3, stdout[-4000:]
    assert took < 30, f"the run went on for {took:.0f}s after the disk filled"
    # one critical alert, saying why; no crash loop, no traceback out of main
    assert stdout.count("ALERT [critical] runtime halted") == 1, stdout[-4000:]
    assert "runtime halted: disk full" in stdout
    assert "restarting coordinator" not in stdout and 'main.py", line' not in stdout
    assert "exit code 3" in stdout
    # summary.json could not be written: it is on stdout instead (and no half file)
    assert not (out / "summary.json.tmp").exists()
    if not (out / "summary.json").exists():
        start = stdout.index(SUMMARY_ON_STDOUT)
        body = stdout[stdout.index("{", start):]
        summary = json.JSONDecoder().raw_decode(body)[0]
    else:
        summary = json.loads((out / "summary.json").read_text())
    assert summary["halted"]["reason"].startswith("disk full")
