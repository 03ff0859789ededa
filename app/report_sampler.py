"""Sampled figures for the run report: what is only known by looking (PnL, mailbox depth).

``run`` drives a :class:`Sampler` from its progress loop (every 0.5 s of
wall time), ``scenario`` at each timeline step. Sampling reads published
figures (``cell.info``) and mailbox depths only, so it stays out of the
actors' hot paths, and it is bounded in memory however long the run.
Time is seconds since the run (or scenario) started.
"""

from __future__ import annotations

from typing import Any

from app.metrics import number, system_of
from runtime.introspection import info_of


class Sampler:
    """Time series of a runtime's figures, bounded in memory.

    Past ``max_samples`` every other sample is dropped and the interval
    doubles, so a long run keeps an even, coarser picture instead of growing.
    The bound is small (a chart is 760 px wide: 120 to 240 points) and a
    sample keeps only the mailboxes that had messages waiting, so the sampler
    reaches its ceiling within two minutes rather than climbing through the
    first half hour of a run (4,000 samples of every mailbox were ~0.2 MB a
    minute of a default run).
    """

    def __init__(self, min_interval_s: float = 0.5, max_samples: int = 240) -> None:
        self.min_interval_s = min_interval_s
        self.max_samples = max_samples
        self.samples: list[dict[str, Any]] = []
        self.actors: list[dict[str, Any]] = []
        self._last_t: float | None = None

    def sample(self, target: Any, t: float, *, force: bool = False) -> bool:
        system = system_of(target)
        if system is None:
            return False
        if (not force and self._last_t is not None
                and t - self._last_t < self.min_interval_s):
            return False
        self._last_t = t
        c = info_of(system, "coordinator")
        pnl = c.get("pnl") or {}
        realized, unrealized = number(pnl.get("realized")), number(pnl.get("unrealized"))
        cells = system.directory.cells()
        self.samples.append({
            "t": float(t),
            "pnl": {"total": realized + unrealized, "realized": realized,
                    "unrealized": unrealized, "daily": number(c.get("daily_pnl"))},
            "positions": {s: number(q) for s, q in (c.get("positions") or {}).items()},
            "rejected": {str(r): int(n) for r, n in (c.get("rejected") or {}).items()},
            "depth": {cell.name: d for cell in cells if (d := cell.mailbox.depth)},
        })
        self.actors = [{"name": cell.name, "supervisor": cell.supervisor, "state": cell.state,
                        "high_water": cell.mailbox.high_water,
                        "processed": cell.mailbox.processed, "restarts": cell.restarts,
                        "last_failure": (cell.last_failure or {}).get("error")}
                       for cell in cells]
        if len(self.samples) > self.max_samples:
            self.samples = self.samples[::2]
            self.min_interval_s *= 2
        return True

    # -- series ---------------------------------------------------------------------

    def series(self, field: str) -> dict[str, list[tuple[float, float]]]:
        """``field`` (a dict per sample) as one series per key, missing keys as 0."""
        keys: list[str] = []
        for s in self.samples:
            for k in s[field]:
                if k not in keys:
                    keys.append(k)
        return {k: [(s["t"], float(s[field].get(k, 0))) for s in self.samples] for k in keys}
