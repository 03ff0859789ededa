"""Keys of a scenario's ``exchange`` blocks: simulated-exchange settings and faults.

The simulated exchange (``exchange/config.py``) is the authority on what
these keys mean and parses them itself when a scenario applies them, so the
shapes here mirror its parsers and the scenario hands it the values exactly
as written. What this module adds is the error location: a bad value inside
``fill_resting`` is reported at its own file line and key path, at load
time, before anything runs. :func:`exchange_check` then asks the exchange's
own parser too, so the two can never drift apart silently.

Settings persist (top-level ``exchange:`` block or a timeline entry); faults
are one-shot and belong in timeline entries only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from collections.abc import Callable

from pydantic import BeforeValidator, Field, Strict, ValidationError, model_validator

from config.registry import KeyRegistry, Spec
from config.types import Dec, Ident, NonNegDec, NonNegFloat, NonNegInt, PosDec, PosInt, Symbol

SETTING = "setting"
FAULT = "fault"

StrictBool = Annotated[bool, Strict()]
Name = Annotated[str, Field(min_length=1)]


def _fill_resting_form(value: Any) -> Any:
    """``true``: every triggered resting order; ``BTCUSDT``: that symbol's."""
    if value is True:
        return {}
    if isinstance(value, str):
        return {"symbol": value}
    if value is False or value is None:
        raise ValueError("write true, a symbol, or a mapping of options")
    return value


class FillResting(Spec):
    symbol: Symbol | None = None
    client_order_id: Name | None = None
    account: Ident | None = None
    qty: PosDec | None = None
    price: PosDec | None = None


class GapPrice(Spec):
    """Jump the book in one step: to ``bid``/``ask``, to ``price``, or by ``pct`` percent."""

    symbol: Symbol
    bid: PosDec | None = None
    ask: PosDec | None = None
    price: PosDec | None = None
    pct: Dec | None = None
    bid_size: NonNegDec | None = None
    ask_size: NonNegDec | None = None

    @model_validator(mode="after")
    def _one_form(self) -> GapPrice:
        forms = [self.bid is not None and self.ask is not None, self.price is not None,
                 self.pct is not None]
        if sum(forms) != 1 or (self.bid is None) != (self.ask is None):
            raise ValueError("price: give exactly one of bid+ask, price, or pct")
        if self.bid is not None and self.ask is not None and self.ask < self.bid:
            raise ValueError(f"ask: {self.ask} is below bid {self.bid}")
        if self.pct is not None and self.pct <= -100:
            raise ValueError(f"pct: {self.pct} must be above -100")
        return self


class RejectRule(Spec):
    """``reject_next``'s targeted form: the next ``count`` orders matching every key given."""

    count: PosInt = 1
    symbol: Symbol | None = None
    side: Literal["buy", "sell"] | None = None
    group_id: Name | None = None


class SetPosition(Spec):
    """A position changed behind the runtime's back (the reconciler must notice)."""

    symbol: Symbol
    qty: Dec
    account: Ident = "default"
    avg_price: PosDec | None = None


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


def _reject_next(value: Any) -> Any:
    """``N``: the next N orders, whoever sent them; ``{count, symbol, side, group_id}``
    (or a list of them): only the next ``count`` orders matching every key given."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must be >= 0")
        return value
    rules = _one_or_many(value)
    if not isinstance(rules, list):
        raise ValueError("must be a count >= 0, or {count, symbol, side, group_id} (or a list)")
    out = []
    for i, rule in enumerate(rules):
        try:
            out.append(RejectRule.model_validate(rule).model_dump(exclude_none=True))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"rule {i}{' ' + where if where else ''}: {err['msg']}") from None
    return out


def _duplicate_fill(value: Any) -> Any:
    """``true``/N: duplicate the next N fill reports; ``last``: resend the last one now."""
    if value == "last" or isinstance(value, bool):
        return value
    if isinstance(value, int) and value >= 0:
        return value
    raise ValueError("must be true, a count >= 0, or last")


def _stall(value: Any) -> Any:
    """``true`` stalls until resumed; a number stalls for that many seconds."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value >= 0 and value == value and value != float("inf"):
        return value
    raise ValueError("must be true, false, or a number of seconds >= 0")


def _restart_form(value: Any) -> Any:
    if value is True or value == "keep":
        return {"wipe": False}
    if value == "wipe":
        return {"wipe": True}
    if not isinstance(value, dict):
        raise ValueError("must be true, keep, wipe, or {wipe: true|false}")
    return value


class Restart(Spec):
    """The exchange restarts (every session drops); ``wipe`` also loses its state."""

    wipe: StrictBool = False


#: Registry of every key an ``exchange`` block may hold; extend with ``register``.
EXCHANGE_KEYS = KeyRegistry("exchange")
for _key, _type in {
    "latency_ms": NonNegFloat,
    "latency_jitter_ms": NonNegFloat,
    "cancel_ack_delay_ms": NonNegFloat,
    "partial_fills": PosInt,
    "partial_fill_interval_ms": NonNegFloat,
    "fee_bps": NonNegDec,
    "maker_fee_bps": Dec,
    "taker_fee_bps": NonNegDec,
    "limit_by_quote_size": StrictBool,
    "symbols": list[Symbol] | None,
    "starting_cash": NonNegDec,
    "quote_currency": Name,
    "seed": NonNegInt,
    "id_prefix": Name,
    "fill_history": PosInt,
    "closed_orders": NonNegInt,
    "closed_order_ids": NonNegInt,
    "log_quotes": StrictBool,
}.items():
    EXCHANGE_KEYS.register(_key, _type, group=SETTING)
for _key, _fault_type in {
    "reject_next": Annotated[Any, BeforeValidator(_reject_next)],
    "fill_resting": Annotated[FillResting, BeforeValidator(_fill_resting_form)],
    "gap_price": GapPrice,
    "duplicate_fill": Annotated[Any, BeforeValidator(_duplicate_fill)],
    "set_position": Annotated[list[SetPosition], BeforeValidator(_one_or_many),
                              Field(min_length=1)],
    "drop_stream": StrictBool,
    "stall_stream": Annotated[Any, BeforeValidator(_stall)],
    "resume_stream": StrictBool,
    "restart": Annotated[Restart, BeforeValidator(_restart_form)],
}.items():
    EXCHANGE_KEYS.register(_key, _fault_type, group=FAULT)


def _default_exchange_parser() -> Callable[[dict[str, Any]], Any] | None:
    try:
        from exchange.config import parse_spec
    except ImportError:  # the simulated exchange is optional for parsing
        return None
    return parse_spec


def exchange_check(key: str, value: Any) -> str | None:
    """The simulated exchange's own verdict on one key (None: accepted or not checkable)."""
    parse = _default_exchange_parser()
    if parse is None:
        return None
    try:
        parse({key: value})
    except ValueError as exc:
        return str(exc)
    return None
