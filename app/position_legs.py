"""Positions per side in hedge mode: the run's own legs against the venue's.

In Binance's dual-side mode a symbol holds a LONG and a SHORT leg, and the
net the runtime books (and ``positions_match`` compares) can be flat while
both legs are open. The runtime knows which leg each of its orders traded:
the ccxt adapter names it from the stored request alone
(``exchange.ccxt_venue.orders.position_side``). So the run's legs are the
venue's legs when it first started (``run.json``) plus what each of its
fills did to its order's leg; at the end of a hedge-mode venue run they are
compared with the venue's, per symbol and side, and a difference is a
``positions_match`` violation (the venue holds a leg the runtime did not
make, or lost one it did).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from app.invariants import violation

Legs = dict[tuple[str, str], Decimal]
RUN_INFO_KEY = "venue_legs_at_start"


def to_json(legs: Legs) -> dict[str, str]:
    return {f"{sym}|{side}": str(q) for (sym, side), q in sorted(legs.items())}


def from_json(raw: Any) -> Legs:
    if not isinstance(raw, dict):
        return {}
    out: Legs = {}
    for key, q in raw.items():
        sym, _, side = str(key).partition("|")
        out[(sym, side)] = Decimal(str(q))
    return out


def run_legs(run_dir: Path, start: Legs) -> Legs:
    """``start`` plus every fill in the run's store on its order's leg."""
    from exchange.ccxt_venue.orders import position_side
    from messages import Side
    from trading.store import Store

    store = Store.open(run_dir)
    try:
        snap = store.read_all()
    finally:
        store.close()
    legs = dict(start)
    for fill in snap["fills"].values():
        rec = snap["orders"].get(fill.client_order_id)
        req = rec.get("order") if isinstance(rec, dict) else None
        if req is None:
            continue  # not this store's order: the venue's legs will say so
        side = position_side(req.side, req.reduce_only)
        sign = Decimal(1) if side == "LONG" else Decimal(-1)
        opening = (side == "LONG") is (fill.side is Side.BUY)
        key = (fill.symbol, side)
        legs[key] = legs.get(key, Decimal(0)) + (sign if opening else -sign) * fill.qty
    return {k: q for k, q in legs.items() if q != 0}


def leg_violations(ours: Legs, venue: Legs) -> list[dict[str, Any]]:
    out = []
    for sym, side in sorted(set(ours) | set(venue)):
        a, b = ours.get((sym, side), Decimal(0)), venue.get((sym, side), Decimal(0))
        if a != b:
            out.append(violation("positions_match",
                                 f"{sym} {side} leg: the run's fills make {a}, the venue "
                                 f"holds {b}", symbol=sym, position_side=side))
    return out


def note_start(venue: Any, info: dict[str, Any]) -> str | None:
    """A hedge-mode venue run's first start notes the venue's legs in its
    run.json ``info``; None, or why they could not be read."""
    from exchange.ccxt_venue.start import venue_legs

    try:
        info[RUN_INFO_KEY] = to_json(venue_legs(venue.settings))
    except Exception as exc:  # noqa: BLE001 - any failure is one clear refusal
        return f"venue {venue.name}: could not read the account's position legs: {exc!r}"[:400]
    return None


def check_legs(venue: Any, run_dir: Path, extra: dict[str, Any],
               not_run: dict[str, str]) -> list[dict[str, Any]]:
    """At the end: the run's legs against the venue's. Both go in the summary
    (``extra``); a failure to read them makes ``positions_match`` not run."""
    from app.resume import read_run_info
    from exchange.ccxt_venue.start import venue_legs

    try:
        theirs = venue_legs(venue.settings)
        ours = run_legs(run_dir, from_json(read_run_info(run_dir).get(RUN_INFO_KEY)))
    except Exception as exc:  # noqa: BLE001 - the check did not run, and says so
        not_run["positions_match"] = f"the position legs could not be compared: {exc!r}"[:300]
        return []
    extra["position_legs"] = {"runtime": to_json(ours), "exchange": to_json(theirs)}
    return leg_violations(ours, theirs)
