"""What the run directory's own records say, on the report's time axis.

What happened at a known instant is drawn from the records, at that
instant, rather than from samples: exposure per symbol from the exchange's
fills (``events.jsonl``), rejections from the audit trail, kill-switch
periods from its engaged/released records. Time is seconds since
:func:`run_origin` (this start of the run; a resumed run's resume); what
happened before it is folded into the value at 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from app.metrics import number
from messages.jsonl import iter_jsonl


@dataclass
class RunRecords:
    """What the run directory's own records say, on the report's time axis."""

    positions: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    rejections: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: (engaged at, released at or None, why)
    halts: list[tuple[float, float | None, str]] = field(default_factory=list)
    fills: int = 0
    end: float | None = None
    #: the audit trail was read (so no rejection in it means none happened)
    audited: bool = False


def _seconds(ts: Any, origin: datetime) -> float | None:
    try:
        return (datetime.fromisoformat(str(ts)) - origin).total_seconds()
    except (TypeError, ValueError):
        return None


def _cumulative(points: dict[str, list[tuple[float, float]]], key: str, t: float,
                delta: float) -> None:
    """Append ``key``'s running total after ``delta`` at ``t``; what happened before
    the axis starts (a resumed run's first part) becomes its value at 0."""
    pts = points.setdefault(key, [(0.0, 0.0)])
    value = pts[-1][1] + delta
    t = max(t, 0.0)
    if pts[-1][0] == t:
        pts[-1] = (t, value)
    else:
        pts.append((t, value))


def read_run_records(run_dir: Path, origin: datetime | None) -> RunRecords:
    """Fills from ``events.jsonl`` and decisions from ``audit.jsonl``, at their own times."""
    rec = RunRecords()
    if origin is None:
        return rec
    events, audit = Path(run_dir) / "events.jsonl", Path(run_dir) / "audit.jsonl"
    last = 0.0
    if events.exists():
        for e in iter_jsonl(events):
            if e.get("kind") != "order_filled":
                continue
            t = _seconds(e.get("t") or e.get("ts"), origin)
            if t is None:
                continue
            sign = 1.0 if str(e.get("side")).lower() == "buy" else -1.0
            _cumulative(rec.positions, str(e.get("symbol")), t, sign * number(e.get("qty")))
            rec.fills += 1
            last = max(last, t)
    if audit.exists():
        rec.audited = True
        open_at: tuple[float, str] | None = None
        for r in iter_jsonl(audit):
            t = _seconds(r.get("timestamp"), origin)
            if t is None:
                continue
            last = max(last, t)
            if r.get("kind") == "risk_decision" and r.get("approved") is False:
                _cumulative(rec.rejections, str(r.get("reason")), t, 1.0)
            elif r.get("kind") == "kill_switch" and r.get("reason") == "engaged":
                if open_at is None:
                    open_at = (max(t, 0.0), str((r.get("inputs") or {}).get("why") or ""))
            elif r.get("kind") == "kill_switch" and r.get("reason") == "released":
                if open_at is not None:
                    rec.halts.append((open_at[0], max(t, 0.0), open_at[1]))
                    open_at = None
        if open_at is not None:
            rec.halts.append((open_at[0], None, open_at[1]))
    rec.end = last
    return rec


def run_origin(summary: Mapping[str, Any]) -> datetime | None:
    """Time zero of the sampler: this start of the run (a resumed run's resume)."""
    for key in ("resumed_at", "started_at"):
        try:
            return datetime.fromisoformat(str(summary.get(key)))
        except (TypeError, ValueError):
            continue
    return None
