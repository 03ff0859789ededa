"""The risk gate: one decision per order intent, with its reason and inputs.

Pure function of the coordinator's state, so every rule is testable on its
own. Orders that can only reduce a position pass even when trading is
halted, positions are stale, or the breaker is open (rule 3, rule 5): the
point of those guards is to stop new risk, never to trap an exit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from messages.bounds import DEFAULT_BOUNDS, Bounds
from messages.enums import OrderPurpose, OrderType, Side
from messages.types import DEFAULT_ACCOUNT, Account, Price, Quantity, Symbol
from trading import venue_rules
from trading.positions import Key, PositionBook
from trading.limits import CircuitBreaker, Limits, RateLimiter
from trading.reasons import Reason
from trading.trading_state import TradingState
from trading.trust import intent_problem

ACTIVE, HALTED = TradingState.ACTIVE, TradingState.HALTED
BPS = Decimal(10_000)


@dataclass(frozen=True)
class Intent:
    """What someone inside the runtime wants sent to the broker."""

    symbol: Symbol
    side: Side
    qty: Quantity
    account: Account = DEFAULT_ACCOUNT
    venue: str = "sim"
    purpose: OrderPurpose = OrderPurpose.ENTRY
    reduce_only: bool = False
    stop_loss: Price | None = None
    limit_price: Price | None = None
    owner: str | None = None
    order_type: OrderType = OrderType.MARKET
    trigger_price: Decimal | None = None

    @property
    def key(self) -> Key:
        return (self.account, self.venue, self.symbol)


@dataclass
class MarketView:
    bid: Price | None = None
    ask: Price | None = None
    volatility: Decimal | None = None
    adv: Decimal | None = None

    @property
    def mid(self) -> Price | None:
        if self.bid is None or self.ask is None:
            return None
        return Price((self.bid + self.ask) / 2)

    @property
    def spread_bps(self) -> Decimal | None:
        bid, ask = self.bid, self.ask
        if bid is None or ask is None:
            return None
        mid = (bid + ask) / 2
        if mid <= 0:
            return None
        return (ask - bid) / mid * BPS


@dataclass
class GateState:
    limits: Limits
    book: PositionBook
    market: dict[str, MarketView]
    symbols: frozenset[str]
    limiter: RateLimiter
    breaker: CircuitBreaker
    trading_state: TradingState = ACTIVE
    positions_fresh: bool = False
    recovering: bool = False
    cooldown_until: dict[str, float] = field(default_factory=dict)
    #: rule 18: sane ranges of the numbers in an intent
    bounds: Bounds = DEFAULT_BOUNDS
    #: symbols whose actor is down (a lost remote host): fail closed for them
    symbols_down: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Decision:
    approved: bool
    reason: Reason
    risk_reducing: bool
    inputs: dict[str, Any]


def decide(intent: Intent, st: GateState, now: float) -> Decision:
    limits = st.limits.for_symbol(intent.symbol)
    book = st.book
    key = intent.key
    mv = st.market.get(intent.symbol) or MarketView()
    # A message that slipped past its own validation (qty NaN or not a number,
    # a side that is no Side) is refused below, never compared: Decimal NaN
    # raises on <=, which would crash the coordinator.
    well_formed = isinstance(intent.side, Side) and _positive_qty(intent.qty)
    reducing = well_formed and book.guaranteed_reduce(key, intent.side, intent.qty)
    position = book.qty(key)
    # The key's in-flight totals, once per decision: the netting, worst-case
    # and duplicate-position checks below all read them.
    pending = book.pending(key)
    inputs: dict[str, Any] = {
        "symbol": intent.symbol, "side": str(intent.side), "qty": str(intent.qty),
        "account": intent.account, "purpose": str(intent.purpose),
        "reduce_only": intent.reduce_only, "position": str(position),
        "pending": [str(x) for x in pending], "trading_state": str(st.trading_state),
        "positions_fresh": st.positions_fresh, "bid": _s(mv.bid), "ask": _s(mv.ask),
    }

    def verdict(reason: Reason, **more: Any) -> Decision:
        inputs.update({k: _s(v) for k, v in more.items()})
        return Decision(reason is Reason.APPROVED, reason, reducing, inputs)

    if intent.symbol not in st.symbols:
        return verdict(Reason.UNKNOWN_SYMBOL)
    if not well_formed:
        return verdict(Reason.INVALID_SIGNAL)
    # Before anything computes with them (even a reducing order): an absurd
    # number overflowed the coordinator's arithmetic once (rule 18).
    problem = intent_problem(intent, st.bounds, mv.mid if mv.bid is not None else None)
    if problem is not None:
        return verdict(Reason.OUT_OF_RANGE, problem=problem)
    if intent.reduce_only and not reducing:
        return verdict(Reason.NETTING_CONFLICT, note="reduce_only order would not reduce")
    rules = st.limits.instrument_rules.get(intent.symbol)
    if rules is not None:  # the venue would refuse it: exits included
        market = intent.order_type in (OrderType.MARKET, OrderType.STOP_MARKET)
        ref = mv.ask if intent.side is Side.BUY else mv.bid
        broken = venue_rules.check(rules, intent.qty,
                                   price=None if market else intent.limit_price,
                                   reference=ref, market=market,
                                   reduce_only=intent.reduce_only or reducing,
                                   trigger=intent.trigger_price)
        if broken is not None:
            return verdict(broken[0], **broken[1])
    if reducing:
        return verdict(Reason.APPROVED)

    # -- from here on the order increases risk --------------------------------
    if st.trading_state != ACTIVE:
        return verdict(Reason.KILL_SWITCH)
    # Not yet reconciled is rule 3's positions_unavailable (DESIGN); recovery
    # (rule 10) still holds entries when fail-closed is explicitly off.
    if not st.positions_fresh and limits.fail_closed_on_missing_positions:
        return verdict(Reason.POSITIONS_UNAVAILABLE)
    if st.recovering:
        return verdict(Reason.RECOVERING)
    if intent.symbol in st.symbols_down:
        return verdict(Reason.SYMBOL_ACTOR_DOWN)
    # Not reducing (that returned above), so netting is the pending sums alone.
    if intent.account not in limits.hedging_accounts \
            and PositionBook.crosses(position, pending, intent.side):
        return verdict(Reason.NETTING_CONFLICT)
    if intent.qty < limits.min_order_size:
        return verdict(Reason.MIN_ORDER_SIZE, limit=limits.min_order_size)
    if intent.qty > limits.max_order_size:
        return verdict(Reason.MAX_ORDER_SIZE, limit=limits.max_order_size)
    worst = PositionBook.worst_case(position, pending, intent.side, intent.qty)
    if worst > limits.max_position_size:
        return verdict(Reason.MAX_POSITION_SIZE, worst_case_qty=worst, limit=limits.max_position_size)
    entry = intent.purpose is OrderPurpose.ENTRY
    if entry and limits.duplicate_position_check \
            and _same_side_exposure(position, pending, intent.side):
        return verdict(Reason.DUPLICATE_POSITION)
    if entry and now < st.cooldown_until.get(intent.symbol, float("-inf")):
        return verdict(Reason.STOP_OUT_COOLDOWN, until=st.cooldown_until[intent.symbol])
    price = intent.limit_price or (mv.ask if intent.side is Side.BUY else mv.bid)
    if price is None:
        return verdict(Reason.NO_MARKET_DATA)
    spread = mv.spread_bps
    if spread is not None and spread > limits.max_spread_bps:
        return verdict(Reason.MAX_SPREAD, spread_bps=round(spread, 2), limit=limits.max_spread_bps)
    if mv.volatility is not None and mv.volatility > limits.max_volatility:
        return verdict(Reason.MAX_VOLATILITY, volatility=mv.volatility, limit=limits.max_volatility)
    if mv.adv is not None and mv.adv > 0 and intent.qty > limits.max_volume_participation * mv.adv:
        return verdict(Reason.MAX_VOLUME_PARTICIPATION, adv=mv.adv)
    if intent.stop_loss is not None and limits.max_loss_per_trade is not None:
        loss = intent.qty * abs(price - intent.stop_loss)
        if loss > limits.max_loss_per_trade:
            return verdict(Reason.MAX_LOSS_PER_TRADE, loss_at_stop=loss, limit=limits.max_loss_per_trade)
    if limits.account_equity > 0:
        share = worst * price / limits.account_equity
        if share > limits.max_position_concentration:
            return verdict(Reason.MAX_POSITION_CONCENTRATION, concentration=round(share, 4))
    if not st.breaker.allow(now):
        return verdict(Reason.CIRCUIT_OPEN, breaker=st.breaker.state)
    if not st.limiter.allow(now):
        return verdict(Reason.RATE_LIMITED)
    return verdict(Reason.APPROVED, price=price)


def _same_side_exposure(pos: Decimal, pending: tuple[Quantity, Quantity], side: Side) -> bool:
    buys, sells = pending
    if side is Side.BUY:
        return pos > 0 or buys > 0
    return pos < 0 or sells > 0


def _positive_qty(qty: Any) -> bool:
    if isinstance(qty, bool) or not isinstance(qty, (Decimal, int)):
        return False
    return Decimal(qty).is_finite() and qty > 0


def _s(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value
