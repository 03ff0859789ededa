"""The simulated exchange's settings and faults: one schema, one set of defaults.

Everything that configures or disturbs the simulated exchange is declared
here and nowhere else:

* :class:`SimBehaviour`: the settings a config file's ``exchange`` section
  takes (latency, fees, partial fills, quote currency...), with THE defaults
  (``config/default.yaml`` lists the same values, and a test keeps the two
  equal, as for every config section);
* :class:`SimSettings`: the engine's live settings: the above plus the keys
  only a scenario or a test sets (``symbols``, ``seed``, ``id_prefix``,
  ``log_quotes``); mutable, because a fault may change a
  setting mid-run;
* the faults (``reject_next``, ``fill_resting``, ``gap_price``...), in
  :data:`EXCHANGE_KEYS` next to the settings, each with its value's shape.

Who reads it: the config section (``config.venue.ExchangeConfig``), so
``run``'s embedded exchange, ``main.py exchange`` and the Binance face all
start from one set of defaults; the scenario loader, which reports a bad
value at its file line and key path; and the engine itself
(``SimulatedExchange.apply`` calls :func:`parse_spec`), so a spec is
validated by the same rules whichever door it comes through. The schema is
config's (DESIGN section 1: config/ holds the configuration schema and
defaults); ``exchange/`` imports it, ``config/`` never imports ``exchange/``.

Settings persist (top-level ``exchange:`` block or a timeline entry); faults
are one-shot and belong in timeline entries only.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any, Literal
from collections.abc import Mapping

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError,
                      model_validator)

from config.errors import describe, format_path
from config.registry import KeyRegistry, Spec
from config.types import (Dec, Ident, NonNegDec, NonNegFloat, NonNegInt, PosInt, Section, Symbol,
                          to_decimal)

SETTING = "setting"
FAULT = "fault"

StrictBool = Annotated[bool, Strict()]
Name = Annotated[str, Field(min_length=1)]


def _exact_decimal(value: Any) -> Decimal:
    """A price or quantity of a fault: a string or an integer, never a float
    (a YAML float may already have lost digits)."""
    if isinstance(value, float) and math.isfinite(value):
        raise ValueError("write a decimal (as a string), not a float: a float may already "
                         "have lost digits")
    return to_decimal(value)


ExactDec = Annotated[Decimal, BeforeValidator(_exact_decimal)]
PosExactDec = Annotated[ExactDec, Field(gt=0)]
NonNegExactDec = Annotated[ExactDec, Field(ge=0)]


# -- settings ------------------------------------------------------------------------------------


class SimBehaviour(Section):
    """How the simulated exchange behaves; the settings a config file may give."""

    latency_ms: NonNegFloat = 1.0
    latency_jitter_ms: NonNegFloat = 0.0
    #: a cancel takes effect this long after it arrives (the order may fill meanwhile)
    cancel_ack_delay_ms: NonNegFloat = 0.0
    #: every fill split into this many partial fills ...
    partial_fills: PosInt = 1
    #: ... this far apart
    partial_fill_interval_ms: NonNegFloat = 0.0
    #: may be negative (a maker rebate)
    maker_fee_bps: Dec = Decimal("1")
    taker_fee_bps: NonNegDec = Decimal("2")
    #: fills never exceed the quoted size at the touch
    limit_by_quote_size: StrictBool = True
    starting_cash: NonNegDec = Decimal("1000000")
    quote_currency: Ident = "USDT"
    #: the simulator's memory, bounded (exchange.retention): fills kept per
    #: account for ``QueryFills`` catch-up ...
    fill_history: PosInt = Field(default=10_000, le=10_000_000)
    #: ... closed orders whose full state is kept (queries, cancel answers) ...
    closed_orders: NonNegInt = Field(default=10_000, le=10_000_000)
    #: ... and, after that, whose final status is kept (duplicate-id refusals)
    closed_order_ids: NonNegInt = Field(default=100_000, le=100_000_000)


class SimSettings(SimBehaviour):
    """The engine's live settings. Mutable: a fault may change a setting, and
    the engine's parts read this one object."""

    model_config = ConfigDict(frozen=False)

    #: the symbols traded (None: any symbol quoted)
    symbols: tuple[Symbol, ...] | None = None
    #: seed of the latency jitter (the exchange's only randomness)
    seed: NonNegInt = 0
    #: exchange order ids are ``{id_prefix}{epoch}-O{n}``, fill ids ``...-F{n}``
    id_prefix: Name = "SIM"
    #: record every quote in events.jsonl
    log_quotes: StrictBool = False

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> SimSettings:
        """Build from settings only; a fault key or unknown key is a ValueError."""
        out = cls()
        if not spec:
            return out
        faults = [k for k in spec if EXCHANGE_KEYS.group_of(k) == FAULT]
        if faults:
            raise ValueError(f"exchange config: {faults} are faults, not settings "
                             f"(apply them with SimulatedExchange.apply)")
        for key, value in parse_spec(spec):
            out.set(key, value)
        return out

    def set(self, key: str, value: Any) -> None:
        """Set one already-validated setting (``fee_bps`` sets maker and taker)."""
        if key == "fee_bps":
            self.maker_fee_bps = self.taker_fee_bps = value
        else:
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


# -- faults --------------------------------------------------------------------------------------


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
    qty: PosExactDec | None = None
    price: PosExactDec | None = None


class GapPrice(Spec):
    """Jump the book in one step: to ``bid``/``ask``, to ``price``, or by ``pct`` percent."""

    symbol: Symbol
    bid: PosExactDec | None = None
    ask: PosExactDec | None = None
    price: PosExactDec | None = None
    pct: ExactDec | None = None
    bid_size: NonNegExactDec | None = None
    ask_size: NonNegExactDec | None = None

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
    qty: ExactDec
    account: Ident = "default"
    avg_price: PosExactDec | None = None


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
            loc, sentence, _ = describe(exc.errors()[0])
            where = format_path(loc)
            raise ValueError(f"rule {i}{' ' + where if where else ''}: {sentence}") from None
    return out


def _duplicate_fill(value: Any) -> Any:
    """``true``/N: duplicate the next N fill reports; ``last``: resend the last one now."""
    if value == "last":
        return value
    if isinstance(value, bool):
        return int(value)
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


# -- the keys ------------------------------------------------------------------------------------


def _field_type(model: type[BaseModel], name: str) -> Any:
    """A model field's type with its constraints, to validate that key alone."""
    info = model.model_fields[name]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


#: Settings, in the order they are documented (``fee_bps`` sets maker and taker).
CONFIG_KEYS = (*SimSettings.model_fields, "fee_bps")

#: Registry of every key an ``exchange`` spec may hold; extend with ``register``.
EXCHANGE_KEYS = KeyRegistry("exchange")
for _key in SimSettings.model_fields:
    EXCHANGE_KEYS.register(_key, _field_type(SimSettings, _key), group=SETTING)
EXCHANGE_KEYS.register("fee_bps", NonNegDec, group=SETTING)
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

#: One-shot faults and stream actions.
FAULT_KEYS = tuple(EXCHANGE_KEYS.keys([FAULT]))


def _check_keys(spec: Any) -> None:
    if not isinstance(spec, Mapping):
        raise ValueError(f"exchange spec must be a mapping, got {type(spec).__name__}")
    for key in spec:
        if key not in EXCHANGE_KEYS:
            raise ValueError(f"unknown exchange key {key!r}; "
                             f"known keys: {', '.join(EXCHANGE_KEYS.keys())}")


def _without_none(value: Any) -> Any:
    """A fault's options as the engine reads them: absent, not None."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def parse_spec(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Validate a whole spec and return ``[(key, normalised value), ...]``.

    Raises ValueError naming the first bad key (with the path inside its
    value) and what is wrong; nothing is applied by this function, so a bad
    spec changes nothing.
    """
    _check_keys(spec)
    try:
        valid = EXCHANGE_KEYS.validate(dict(spec))
    except ValidationError as exc:
        loc, sentence, _ = describe(exc.errors()[0])
        raise ValueError(f"exchange {format_path(loc)}: {sentence}") from None
    return [(key, _without_none(value)) for key, value in valid.items()]


def split_spec(spec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(settings, faults)`` from one mixed dict, validating key names."""
    _check_keys(spec)
    settings = {k: v for k, v in spec.items() if EXCHANGE_KEYS.group_of(k) == SETTING}
    faults = {k: v for k, v in spec.items() if EXCHANGE_KEYS.group_of(k) == FAULT}
    return settings, faults


def validate_spec(spec: Mapping[str, Any]) -> None:
    """For scenario loaders: raise ValueError now rather than mid-run."""
    parse_spec(spec)
