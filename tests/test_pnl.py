"""The incremental PnL tracker always equals the full recomputation."""

from __future__ import annotations

import random
from decimal import Decimal as D

from messages.enums import Side
from trading.positions import ZERO, PositionBook
from trading.gate import MarketView
from trading.pnl import PnlTracker


# -- the full recomputation the tracker must always agree with --------------------------------


def unrealized(book, market):
    total = ZERO
    for (_, _, sym), pos in book.positions.items():
        mv = market.get(sym)
        total += pos.unrealized(mv.mid if mv is not None else None)
    return total


def realized(book):
    return sum((p.realized for p in book.positions.values()), ZERO)


def daily_pnl(book, market):
    return realized(book) + unrealized(book, market)


def signed_positions(book):
    out = {}
    for (_, _, sym), pos in book.positions.items():
        out[sym] = out.get(sym, ZERO) + pos.qty
    return out


#: the average entry price is a 28-digit Decimal quotient, so sums taken in a
#: different order may differ in the last digit
EPS = D("1e-15")


def close(a, b):
    return abs(a - b) < EPS


def test_incremental_pnl_matches_full_sum_over_random_fills_and_quotes():
    rng = random.Random(7)
    book, market = PositionBook(), {}
    pnl = PnlTracker(book, market)
    symbols = [f"S{i}" for i in range(6)]
    for n in range(2000):
        sym = rng.choice(symbols)
        if rng.random() < 0.5:
            mid = D(rng.randint(9000, 11000)) / 100
            mv = market.setdefault(sym, MarketView())
            mv.bid, mv.ask = mid - D("0.01"), mid + D("0.01")
            pnl.mark_symbol(sym)
        else:
            key = (rng.choice(["a", "b"]), "sim", sym)
            side = rng.choice([Side.BUY, Side.SELL])
            book.apply_fill(f"o{n}", f"f{n}", side, D(rng.randint(1, 9)),
                            D(rng.randint(9000, 11000)) / 100, D("0.01"), key)
            pnl.update_key(key)
        assert close(pnl.daily, daily_pnl(book, market))
    assert close(pnl.realized_total, realized(book))
    assert close(pnl.unrealized_total, unrealized(book, market))
    assert pnl.positions == {s: str(q) for s, q in signed_positions(book).items()}
    for sym in symbols:  # the per-symbol figures the metrics label by symbol
        keys = [k for k in book.positions if k[2] == sym]
        mids = market.get(sym)
        assert close(pnl.realized_by_symbol.get(sym, ZERO),
                     sum((book.positions[k].realized for k in keys), ZERO))
        assert close(pnl.unrealized_by_symbol.get(sym, ZERO),
                     sum((book.positions[k].unrealized(mids.mid if mids else None) for k in keys),
                         ZERO))
    before = pnl.daily
    pnl.rebuild()
    assert close(pnl.daily, before)
