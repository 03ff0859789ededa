"""Configuration of the simulated exchange and parsing of fault specs.

A scenario's ``exchange:`` block and its timeline ``exchange:`` entries are
plain dicts. They mix behaviour settings (``latency_ms``, ``partial_fills``,
``cancel_ack_delay_ms``) and one-shot faults (``reject_next``,
``fill_resting``, ``drop_stream``...). Everything is validated here, before
anything is applied, so a typo fails loudly with the key's name instead of
silently running a different scenario.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from exchange.retention import KEEP_IDS, KEEP_STATES

#: Settings that persist until changed again (``ExchangeConfig`` fields).
CONFIG_KEYS = (
    "latency_ms", "latency_jitter_ms", "cancel_ack_delay_ms", "partial_fills",
    "partial_fill_interval_ms", "fee_bps", "maker_fee_bps", "taker_fee_bps",
    "limit_by_quote_size", "symbols", "starting_cash", "quote_currency", "seed", "id_prefix",
    "fill_history", "closed_orders", "closed_order_ids", "log_quotes",
)

#: One-shot faults and stream actions.
FAULT_KEYS = (
    "reject_next", "fill_resting", "gap_price", "duplicate_fill", "set_position", "drop_stream",
    "stall_stream", "resume_stream", "restart",
)

KNOWN_KEYS = CONFIG_KEYS + FAULT_KEYS


@dataclass
class ExchangeConfig:
    """Behaviour of the simulated exchange. Mutable: faults may change it."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    cancel_ack_delay_ms: float = 0.0
    partial_fills: int = 1
    partial_fill_interval_ms: float = 0.0
    maker_fee_bps: Decimal = Decimal("0")
    taker_fee_bps: Decimal = Decimal("0")
    limit_by_quote_size: bool = True
    symbols: tuple[str, ...] | None = None
    starting_cash: Decimal = Decimal("1000000")
    quote_currency: str = "USD"
    seed: int = 0
    id_prefix: str = "SIM"
    fill_history: int = 100_000
    #: closed orders whose full state is kept, then whose final status (exchange.retention)
    closed_orders: int = KEEP_STATES
    closed_order_ids: int = KEEP_IDS
    log_quotes: bool = False

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | None) -> ExchangeConfig:
        """Build from settings only; a fault key or unknown key is a ValueError."""
        cfg = cls()
        if not spec:
            return cfg
        faults = [k for k in spec if k in FAULT_KEYS]
        if faults:
            raise ValueError(f"exchange config: {faults} are faults, not settings "
                             f"(apply them with SimulatedExchange.apply)")
        for key, value in parse_spec(spec):
            cfg.set(key, value)
        return cfg

    def set(self, key: str, value: Any) -> None:
        """Set one already-validated setting (``fee_bps`` sets maker and taker)."""
        if key == "fee_bps":
            self.maker_fee_bps = self.taker_fee_bps = value
        else:
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def split_spec(spec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(settings, faults)`` from one mixed dict, validating key names."""
    _check_keys(spec)
    settings = {k: v for k, v in spec.items() if k in CONFIG_KEYS}
    faults = {k: v for k, v in spec.items() if k in FAULT_KEYS}
    return settings, faults


def _check_keys(spec: Any) -> None:
    if not isinstance(spec, Mapping):
        raise ValueError(f"exchange spec must be a mapping, got {type(spec).__name__}")
    for key in spec:
        if key not in KNOWN_KEYS:
            raise ValueError(f"unknown exchange key {key!r}; known keys: {', '.join(KNOWN_KEYS)}")


def parse_spec(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Validate a whole spec and return ``[(key, normalised value), ...]``.

    Raises ValueError naming the first bad key or value; nothing is applied
    by this function, so a bad spec changes nothing.
    """
    _check_keys(spec)
    return [(key, _PARSERS[key](key, value)) for key, value in spec.items()]


def validate_spec(spec: Mapping[str, Any]) -> None:
    """For scenario loaders: raise ValueError now rather than mid-run."""
    parse_spec(spec)


# -- value parsers --------------------------------------------------------------


def _num(key: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise ValueError(f"exchange {key}: expected a number, got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise ValueError(f"exchange {key}: {value!r} is not a number") from None
    if math.isnan(out) or math.isinf(out) or out < minimum:
        raise ValueError(f"exchange {key}: must be a finite number >= {minimum}, got {value!r}")
    return out


def _int(key: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"exchange {key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"exchange {key}: expected true or false, got {value!r}")
    return value


def dec(key: str, value: Any, *, positive: bool = False, non_negative: bool = False) -> Decimal:
    """A finite Decimal from a string/int (floats are refused: they lose digits)."""
    if isinstance(value, bool) or isinstance(value, float) or not isinstance(value, (int, str, Decimal)):
        raise ValueError(f"exchange {key}: expected a decimal (as a string), got {value!r}")
    try:
        out = Decimal(value)
    except (InvalidOperation, ValueError):
        raise ValueError(f"exchange {key}: {value!r} is not a decimal number") from None
    if not out.is_finite():
        raise ValueError(f"exchange {key}: {value!r} is not a finite number")
    if positive and out <= 0:
        raise ValueError(f"exchange {key}: must be > 0, got {value!r}")
    if non_negative and out < 0:
        raise ValueError(f"exchange {key}: must be >= 0, got {value!r}")
    return out


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"exchange {key}: expected a non-empty string, got {value!r}")
    return value


def _mapping(key: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"exchange {key}: expected a mapping with keys {allowed}, got {value!r}")
    for k in value:
        if k not in allowed:
            raise ValueError(f"exchange {key}: unknown key {k!r}; allowed: {', '.join(allowed)}")
    return dict(value)


def _symbols(key: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"exchange {key}: expected a list of symbols, got {value!r}")
    return tuple(_str(key, s) for s in value)


def _fill_resting(key: str, value: Any) -> dict[str, Any]:
    if value is True:
        return {}
    if isinstance(value, str):
        return {"symbol": value}
    spec = _mapping(key, value, ("symbol", "client_order_id", "qty", "price", "account"))
    out: dict[str, Any] = {}
    for name in ("symbol", "client_order_id", "account"):
        if name in spec:
            out[name] = _str(f"{key}.{name}", spec[name])
    for name in ("qty", "price"):
        if name in spec:
            out[name] = dec(f"{key}.{name}", spec[name], positive=True)
    return out


def _gap_price(key: str, value: Any) -> dict[str, Any]:
    spec = _mapping(key, value, ("symbol", "bid", "ask", "price", "pct", "bid_size", "ask_size"))
    if "symbol" not in spec:
        raise ValueError(f"exchange {key}: needs a symbol")
    out: dict[str, Any] = {"symbol": _str(f"{key}.symbol", spec["symbol"])}
    forms = [f for f in (("bid", "ask"), ("price",), ("pct",)) if all(k in spec for k in f)]
    if len(forms) != 1 or (("bid" in spec) != ("ask" in spec)):
        raise ValueError(f"exchange {key}: give exactly one of bid+ask, price, or pct")
    for name in ("bid", "ask", "price"):
        if name in spec:
            out[name] = dec(f"{key}.{name}", spec[name], positive=True)
    if "pct" in spec:
        out["pct"] = dec(f"{key}.pct", spec["pct"])
        if out["pct"] <= -100:
            raise ValueError(f"exchange {key}.pct: must be > -100, got {spec['pct']!r}")
    if "bid" in out and out["ask"] < out["bid"]:
        raise ValueError(f"exchange {key}: ask {out['ask']} below bid {out['bid']}")
    for name in ("bid_size", "ask_size"):
        if name in spec:
            out[name] = dec(f"{key}.{name}", spec[name], non_negative=True)
    return out


def _bps(key: str, value: Any, *, non_negative: bool = False) -> Decimal:
    """Basis points; a YAML float like 2.5 is accepted through its repr."""
    if isinstance(value, float) and math.isfinite(value):
        value = repr(value)
    return dec(key, value, non_negative=non_negative)


def _duplicate_fill(key: str, value: Any) -> int | str:
    if value == "last":
        return "last"
    if isinstance(value, bool):
        return 1 if value else 0
    return _int(key, value)


def _reject_next(key: str, value: Any) -> int | list[dict[str, Any]]:
    """``N``: reject the next N orders, whoever sent them. A mapping (or a list of
    them) ``{count, symbol, side, group_id}`` rejects only the next ``count``
    (default 1) orders that match every key given: a drill can then fail one leg
    of one order group while other orders on the same venue go through."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _int(key, value)
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        spec = _mapping(key, item, ("count", "symbol", "side", "group_id"))
        rule: dict[str, Any] = {"count": _int(f"{key}.count", spec.get("count", 1), minimum=1)}
        for name in ("symbol", "group_id"):
            if name in spec:
                rule[name] = _str(f"{key}.{name}", spec[name])
        if "side" in spec:
            if spec["side"] not in ("buy", "sell"):
                raise ValueError(f"exchange {key}.side: expected buy or sell, got {spec['side']!r}")
            rule["side"] = spec["side"]
        out.append(rule)
    return out


def _set_position(key: str, value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        spec = _mapping(key, item, ("symbol", "qty", "account", "avg_price"))
        if "symbol" not in spec or "qty" not in spec:
            raise ValueError(f"exchange {key}: needs symbol and qty")
        entry: dict[str, Any] = {"symbol": _str(f"{key}.symbol", spec["symbol"]),
                                 "qty": dec(f"{key}.qty", spec["qty"]),
                                 "account": _str(f"{key}.account", spec.get("account", "default"))}
        if "avg_price" in spec:
            entry["avg_price"] = dec(f"{key}.avg_price", spec["avg_price"], positive=True)
        out.append(entry)
    return out


def _stall(key: str, value: Any) -> float | bool:
    """``true`` stalls until resumed; a number stalls for that many seconds."""
    if isinstance(value, bool):
        return value
    return _num(key, value)


def _restart(key: str, value: Any) -> dict[str, bool]:
    if value is True or value == "keep":
        return {"wipe": False}
    if value == "wipe":
        return {"wipe": True}
    spec = _mapping(key, value, ("wipe",))
    return {"wipe": _bool(f"{key}.wipe", spec.get("wipe", False))}


_PARSERS: dict[str, Any] = {
    "latency_ms": _num,
    "latency_jitter_ms": _num,
    "cancel_ack_delay_ms": _num,
    "partial_fills": lambda k, v: _int(k, v, minimum=1),
    "partial_fill_interval_ms": _num,
    "fee_bps": lambda k, v: _bps(k, v, non_negative=True),
    "maker_fee_bps": _bps,  # may be negative: a maker rebate
    "taker_fee_bps": lambda k, v: _bps(k, v, non_negative=True),
    "limit_by_quote_size": _bool,
    "symbols": _symbols,
    "starting_cash": lambda k, v: dec(k, v, non_negative=True),
    "quote_currency": _str,
    "seed": _int,
    "id_prefix": _str,
    "fill_history": lambda k, v: _int(k, v, minimum=1),
    "closed_orders": lambda k, v: _int(k, v, minimum=0),
    "closed_order_ids": lambda k, v: _int(k, v, minimum=0),
    "log_quotes": _bool,
    "reject_next": _reject_next,
    "fill_resting": _fill_resting,
    "gap_price": _gap_price,
    "duplicate_fill": _duplicate_fill,
    "set_position": _set_position,
    "drop_stream": _bool,
    "stall_stream": _stall,
    "resume_stream": _bool,
    "restart": _restart,
}
