"""Read-only views of one account as a futures venue shows it: mark, wallet, maker.

The engine keeps cash like a spot account and knows nothing of marks or of
which side of the book a fill took; Binance's answers need all three. This
part derives them from the engine's state on demand and holds no state of its
own, so REST answers and streamed ``ACCOUNT_UPDATE`` events agree by
construction (both read through here).
"""

from __future__ import annotations

from decimal import Decimal

from exchange.engine import SimulatedExchange
from messages import OrderFilled


class AccountView:
    def __init__(self, engine: SimulatedExchange) -> None:
        self.engine = engine

    def mark(self, symbol: str) -> Decimal | None:
        """The mark price of ``symbol``: the book's mid, None before a quote."""
        book = self.engine.books.get(symbol)
        return book.mid if book is not None else None

    def wallet(self, account: str) -> tuple[Decimal, Decimal]:
        """(wallet balance, unrealized PnL at the mid) in the settlement asset.

        The engine keeps cash like a spot account (a buy pays its notional);
        a futures wallet holds cash plus the cost of the open positions, i.e.
        starting cash + realized PnL - fees."""
        acct = self.engine.account(account)
        wallet = acct.cash.get(self.engine.config.quote_currency, Decimal(0))
        upnl = Decimal(0)
        for sym, pos in acct.positions.items():
            wallet += pos.qty * pos.avg_price
            mark = self.mark(sym)
            if mark is not None and pos.qty:
                upnl += (mark - pos.avg_price) * pos.qty
        return wallet, upnl

    def maker(self, fill: OrderFilled) -> bool:
        """Whether ``fill`` was a maker fill (told by its fee; False when the
        maker and taker fees are equal and so cannot tell them apart)."""
        cfg = self.engine.config
        if cfg.maker_fee_bps == cfg.taker_fee_bps:
            return False
        fee = fill.qty * fill.price * Decimal(cfg.maker_fee_bps) / Decimal(10000)
        return abs(fill.fee - fee) < Decimal("0.00000001")
