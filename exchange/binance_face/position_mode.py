"""Binance's position modes on the face: one-way (``BOTH``) or dual side (hedge).

The simulated engine nets one position per account and symbol. Binance in
dual-side mode keeps two per symbol, a LONG and a SHORT leg, and every order
names the leg (``positionSide``): BUY/LONG and SELL/SHORT open, SELL/LONG and
BUY/SHORT close. The face keeps the legs beside the engine, from the engine's
own fills and each order's leg, so that ``positionAmt`` per leg is what
Binance would show while the engine's net stays LONG - SHORT (the mode can
only change with no position and no open order, as on Binance, so the legs
start from flat).

Binance's rules on a new order (USDⓈ-M "New Order", "Change Position Mode"):

* one-way: ``positionSide`` absent or ``BOTH``, else ``-4061``;
* dual side: ``positionSide`` LONG or SHORT, else ``-4061``; ``reduceOnly``
  cannot be sent (``-1106``): a closing order is reduce-only by its leg, and
  one larger than its leg (less what the leg's working closing orders
  already take) is refused ``-2022``;
* ``POST /fapi/v1/positionSide/dual``: ``-4059`` when nothing changes,
  ``-4067`` with open orders, ``-4068`` with a position.

What the engine cannot do per leg: it matches and nets per account and
symbol, so a conditional closing order that triggers after its leg was
closed by another order still fills (Binance would expire it). The face then
books the excess on the other leg (the net stays the engine's) and records
``hedge_leg_overrun`` in ``events.jsonl``. The legs live with the face: a
face restarted on a running engine starts with none (switch modes on a flat
account again); a wiped engine (a new epoch) forgets modes and legs with its
accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from loguru import logger

from exchange.binance_face.errors import BinanceError
from exchange.binance_face.registry import _Bounded
from messages import OrderFilled, Side

ZERO = Decimal(0)
LONG, SHORT, BOTH = "LONG", "SHORT", "BOTH"


@dataclass
class Leg:
    qty: Decimal = ZERO
    cost: Decimal = ZERO

    @property
    def entry(self) -> Decimal:
        return self.cost / self.qty if self.qty else ZERO


def closes(side: Side, ps: str) -> bool:
    """SELL on the LONG leg and BUY on the SHORT leg close it."""
    return (ps == LONG) is (side is Side.SELL)


class PositionModes:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        #: the engine's epoch these modes and legs belong to: a wiped engine
        #: (the ``restart: {wipe: true}`` fault) forgot every account, and so
        #: do they (one-way, flat)
        self.epoch = engine.epoch
        #: accounts in dual-side (hedge) mode
        self.dual: set[str] = set()
        #: client order id -> its leg (orders of dual-side accounts only)
        self.sides: _Bounded = _Bounded()
        self.legs: dict[tuple[str, str], dict[str, Leg]] = {}
        self.overruns = 0

    def is_dual(self, account: str) -> bool:
        self._sync()
        return account in self.dual

    def side_of(self, coid: str) -> str:
        self._sync()
        return str(self.sides.get(coid, BOTH))

    def switch(self, account: str, on: bool) -> None:
        """``POST /fapi/v1/positionSide/dual``: Binance's refusals, then the switch."""
        engine = self.engine
        if on == self.is_dual(account):
            raise BinanceError(-4059, "No need to change position side.")
        if any(st.request.account == account for st in engine.open_orders()):
            raise BinanceError(-4067, "Position side cannot be changed if there exists open "
                                      "orders.")
        if any(p.qty for p in engine.account(account).positions.values()):
            raise BinanceError(-4068, "Position side cannot be changed if there exists "
                                      "position.")
        if on:
            self.dual.add(account)
        else:
            self.dual.discard(account)
        for key in [k for k in self.legs if k[0] == account]:
            del self.legs[key]
        engine.log.append("position_mode", engine.now(), account=account,
                          dual_side_position=on)

    def check(self, params: dict[str, str], account: str, *, algo: bool) -> str:
        """The order's leg (``BOTH`` in one-way mode), or Binance's refusal."""
        ps = params.get("positionSide", BOTH)
        if not self.is_dual(account):
            if ps != BOTH:
                raise BinanceError(-4061, "Order's position side does not match user's setting.")
            return BOTH
        if ps not in (LONG, SHORT):
            raise BinanceError(-4061, "Order's position side does not match user's setting.")
        if "reduceOnly" in params:
            raise BinanceError(-1106, "Parameter 'reduceOnly' sent when not required.")
        side = Side.SELL if params.get("side") == "SELL" else Side.BUY
        if closes(side, ps):
            symbol = params.get("symbol", "")
            try:
                qty = Decimal(params.get("quantity") or "0")
            except ArithmeticError:
                return ps  # the order's own checks name the bad quantity
            held = self.leg(account, symbol, ps).qty
            taken = ZERO if algo else self._closing(account, symbol, ps)
            if qty > held - taken:
                raise BinanceError(-2022, "ReduceOnly Order is rejected.")
        return ps

    def placed(self, coid: str, ps: str) -> None:
        if ps != BOTH:
            self.sides[coid] = ps

    def leg(self, account: str, symbol: str, ps: str) -> Leg:
        return self.legs.setdefault((account, symbol), {LONG: Leg(), SHORT: Leg()})[ps]

    def on_fill(self, account: str, fill: OrderFilled) -> None:
        """Move the fill's leg (once per fill id: the caller's first report)."""
        engine = self.engine
        ps = self.sides.get(fill.client_order_id)
        if ps is None or not self.is_dual(account):
            return
        leg = self.leg(account, fill.symbol, ps)
        if not closes(fill.side, ps):
            leg.qty += fill.qty
            leg.cost += fill.qty * fill.price
            return
        take = min(fill.qty, leg.qty)
        entry = leg.entry
        leg.qty -= take
        leg.cost = leg.qty * entry if leg.qty else ZERO
        excess = fill.qty - take
        if excess > 0:  # the engine nets: what Binance would have expired opened the other leg
            other = self.leg(account, fill.symbol, SHORT if ps == LONG else LONG)
            other.qty += excess
            other.cost += excess * fill.price
            self.overruns += 1
            engine.log.append("hedge_leg_overrun", engine.now(), account=account,
                              client_order_id=fill.client_order_id, symbol=fill.symbol,
                              qty=str(excess))
            logger.warning("binance face: {} closed {} more than its {} leg held (the engine "
                           "nets); booked on the other leg", fill.client_order_id, excess, ps)

    def rows(self, account: str, symbol: str) -> list[tuple[str, Decimal, Decimal]]:
        """(positionSide, signed positionAmt, entry) per leg; SHORT is negative, as Binance."""
        self._sync()
        return [(LONG, self.leg(account, symbol, LONG).qty, self.leg(account, symbol, LONG).entry),
                (SHORT, -self.leg(account, symbol, SHORT).qty,
                 self.leg(account, symbol, SHORT).entry)]

    def _closing(self, account: str, symbol: str, ps: str) -> Decimal:
        """What the leg's working (non-conditional) closing orders still take."""
        total = ZERO
        for st in self.engine.open_orders():
            req = st.request
            if req.account != account or req.symbol != symbol or not st.triggered:
                continue
            if self.sides.get(req.client_order_id) == ps and closes(req.side, ps):
                total += st.leaves
        return total

    def _sync(self) -> None:
        if self.engine.epoch != self.epoch:
            self.epoch = self.engine.epoch
            self.dual.clear()
            self.legs.clear()
            self.sides.clear()
