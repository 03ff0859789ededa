"""Shared test setup: quiet logs, a virtual-time harness fixture."""

from __future__ import annotations

import sys

import pytest
from loguru import logger


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs():
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    yield


@pytest.fixture
def life(tmp_path):
    """Crash/restart lives of a runtime (tests/recovery_life.py); all stopped after the test."""
    from tests.recovery_life import Life

    made = []

    def make(**kw):
        lf = Life(tmp_path / "run", **kw)
        made.append(lf)
        return lf.start()

    yield make
    for lf in made:
        lf.stop()


@pytest.fixture
def harness_factory():
    """Build VirtualHarness instances that are always shut down after the test."""
    from runtime.testing import VirtualHarness

    made = []

    def make(*children, **kw):
        h = VirtualHarness(*children, **kw).start()
        made.append(h)
        return h

    yield make
    for h in made:
        h.system.shutdown()
