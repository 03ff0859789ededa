"""The one enum of risk decision reason codes (audit, metrics, summary)."""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    APPROVED = "approved"
    INVALID_SIGNAL = "invalid_signal"
    UNKNOWN_SYMBOL = "unknown_symbol"
    NETTING_CONFLICT = "netting_conflict"
    POSITIONS_UNAVAILABLE = "positions_unavailable"
    MAX_POSITION_SIZE = "max_position_size"
    MAX_ORDER_SIZE = "max_order_size"
    MIN_ORDER_SIZE = "min_order_size"
    MAX_SPREAD = "max_spread_bps"
    MAX_VOLATILITY = "max_volatility"
    MAX_VOLUME_PARTICIPATION = "max_volume_participation"
    MAX_LOSS_PER_TRADE = "max_loss_per_trade"
    MAX_POSITION_CONCENTRATION = "max_position_concentration"
    STOP_OUT_COOLDOWN = "stop_out_cooldown"
    DUPLICATE_POSITION = "duplicate_position"
    CIRCUIT_OPEN = "circuit_open"
    RATE_LIMITED = "rate_limited"
    KILL_SWITCH = "kill_switch"
    NO_MARKET_DATA = "no_market_data"
    WORST_CASE_MARGIN = "worst_case_margin"
    RECOVERING = "recovering"
    #: the venue's instrument rules (trading.venue_rules), refused before sending
    VENUE_LOT_SIZE = "venue_lot_size"
    VENUE_MIN_NOTIONAL = "venue_min_notional"
    VENUE_TICK_SIZE = "venue_tick_size"
    VENUE_PRICE_BAND = "venue_price_band"
    #: a price, quantity or notional outside the sane range (rule 18)
    OUT_OF_RANGE = "out_of_range"
    #: the symbol's own actor (its market data and strategy) is down: a remote
    #: host lost, waiting for its supervisor's restart
    SYMBOL_ACTOR_DOWN = "symbol_actor_down"

    def __str__(self) -> str:
        return self.value
