"""Checking a scenario's ``expect`` block against what happened.

Each key of ``config.scenario_schema.EXPECT_KEYS`` has one check here; a
failure is one readable sentence naming the key, what was expected and
what was seen. Quantities at the exchange (exits, hedges) are read from its
own ``events.jsonl``, joined to the audit trail for each order's purpose, so
an exit the runtime does not know about still counts.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from app.invariants import Record

ZERO = Decimal(0)


def exit_and_hedge_qty(events: Sequence[Record], audit: Sequence[Record]) -> dict[str, dict[str, Decimal]]:
    """Filled quantity per symbol of exits (reduce-only orders) and of hedges,
    from the run's events.jsonl and audit.jsonl records."""
    # keyed and valued as the records carry them (None where a field is missing)
    purpose: dict[str | None, Any] = {}
    for rec in audit:
        if rec.get("kind") == "risk_decision" and rec.get("approved"):
            purpose[rec.get("client_order_id")] = (rec.get("inputs") or {}).get("purpose")
    reduce_only: set[str | None] = set()
    exits: dict[str, Decimal] = defaultdict(lambda: ZERO)
    hedges: dict[str, Decimal] = defaultdict(lambda: ZERO)
    seen: set[str | None] = set()
    for ev in events:
        kind, coid = ev.get("kind"), ev.get("client_order_id")
        if kind == "order_submitted" and ev.get("reduce_only"):
            reduce_only.add(coid)
        elif kind == "order_filled" and ev.get("fill_id") not in seen:
            seen.add(ev.get("fill_id"))
            qty = Decimal(str(ev["qty"]))
            if coid in reduce_only or purpose.get(coid) in ("stop", "exit"):
                exits[ev["symbol"]] += qty
            if purpose.get(coid) == "hedge":
                hedges[ev["symbol"]] += qty
    return {"exit_qty": dict(exits), "hedge_qty": dict(hedges)}


def _bounds(rng: Mapping[str, Any]) -> tuple[int, int | None]:
    """A count range as the loader hands it over: ``{min, max}`` (max None: no bound)."""
    return int(rng.get("min", 0)), rng.get("max")


def _in_range(value: int, rng: Any) -> bool:
    lo, hi = _bounds(rng)
    return value >= lo and (hi is None or value <= hi)


def _show(rng: Any) -> str:
    lo, hi = _bounds(rng)
    if hi == lo:
        return str(lo)
    return f"{lo}..{'' if hi is None else hi}"


def _count(key: str, seen: int, rng: Any, out: list[str]) -> None:
    if not _in_range(seen, rng):
        out.append(f"{key}: expected {_show(rng)}, got {seen}")


def _qty_map(key: str, want: Mapping[str, Decimal], got: Mapping[str, Any], out: list[str],
             cmp: Callable[[Decimal, Decimal], bool] = lambda a, b: a == b, word: str = "") -> None:
    for sym, qty in want.items():
        seen = Decimal(str(got.get(sym, "0") or "0"))
        if not cmp(seen, Decimal(qty)):
            out.append(f"{key}.{sym}: expected {word}{qty}, got {seen}")


def check_expect(expect: Mapping[str, Any], summary: Mapping[str, Any],
                 exchange: Mapping[str, Mapping[str, Decimal]]) -> list[str]:
    out: list[str] = []
    for key, want in expect.items():
        if key == "positions":
            _qty_map(key, want, summary["positions"], out)
        elif key == "exchange_positions":
            _qty_map(key, want, summary.get("exchange_positions") or {}, out)
        elif key == "max_exit_qty":
            _qty_map(key, want, exchange["exit_qty"], out, lambda a, b: a <= b, "at most ")
        elif key == "hedge_qty":
            _qty_map(key, want, exchange["hedge_qty"], out)
        elif key == "orders":
            for name, rng in want.items():
                _count(f"orders.{name}", summary["orders"][name], rng, out)
        elif key == "stop_exits":
            for name, rng in want.items():
                _count(f"stop_exits.{name}", summary["stop_exits"][name], rng, out)
        elif key == "exits":
            for name, rng in want.items():
                _count(f"exits.{name}", int((summary.get("exits") or {}).get(name, 0)), rng, out)
        elif key == "risk_approved":
            _count(key, summary["risk"]["approved"], want, out)
        elif key == "risk_rejected":
            for reason, rng in want.items():
                _count(f"risk_rejected.{reason}", summary["risk"]["rejected"].get(reason, 0), rng, out)
        elif key == "restarts":
            for actor, rng in want.items():
                _count(f"restarts.{actor}", summary["restarts"].get(actor, 0), rng, out)
        elif key in ("hedges", "signals", "market_events", "alerts"):
            _count(key, int(summary.get(key, 0)), want, out)
        elif key == "kill_switch":
            tripped = summary["kill_switch"]["trips"] > 0
            if tripped != want:
                out.append(f"kill_switch: expected {'a trip' if want else 'no trip'}, got "
                           f"{summary['kill_switch']['trips']} trip(s)")
        elif key == "no_invariant_violations":
            if summary["invariant_violations"]:
                out.append(f"no_invariant_violations: {len(summary['invariant_violations'])} "
                           "violated")
        else:  # the schema's registry and this function must list the same keys
            out.append(f"{key}: no check implemented for this expect key")
    return out
