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
