"""What an order group is made of: legs, roles, and the order they go out in.

A group spec is plain data (a scenario's ``group:`` entry, a ``SubmitGroup``
message), so it is validated here, once, into frozen :class:`GroupSpec`
objects; a mistake names the key that holds it. Kinds:

* ``single``: one leg (``symbol``, ``side``, ``qty``, optional ``price``);
  a single order is a group of one, so it gets the same margin gate.
* ``bull_put`` / ``bear_call``: vertical credit spreads on ``underlying``,
  ``expiry``, ``short_strike``, ``long_strike``, ``qty``.
* ``protective_put``: buy ``qty`` of ``symbol`` and a put on it
  (``expiry``, ``strike``, optional ``put_qty``).
* ``pair``: buy ``long``, sell ``short`` (``qty`` or ``long_qty``/``short_qty``).
* ``custom``: ``legs: [{symbol, side, qty, price?, role?, iv?, multiplier?, exits?}]``
  (``exits``: the leg's exit plan, ``messages.orders.ExitPlan``'s fields; ``single``
  takes it too).

Every kind accepts ``id``, ``account``, ``iv`` (used for an option that has
no quote to imply a volatility from) and ``multiplier`` (contract size; the
simulated exchange books qty x price, so 1 is its truth). Helper kinds take
optional limit prices per leg in ``prices: {SYMBOL: price}``.

Rule 6's priority: protective legs (0) and long legs (1) first, hedges and
covered shorts (2) next, naked shorts (3) last. Roles are derived when not
given: a buy that covers a sell in the same group (an option on the same
underlying, a put on an underlying the group buys) is protective, other buys
are long; a sell covered by a buy in the group is a covered short, other
sells are naked. The sort is stable, so equal priorities keep spec order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from collections.abc import Mapping

from messages.base import MessageError
from messages.orders import ExitPlan
from messages.types import Account, Price, Quantity, Symbol

from trading.instruments import OptionSpec, option_symbol, parse_option

ROLE_PRIORITY = {"protective": 0, "long": 1, "hedge": 2, "covered_short": 2, "short": 3}
BUY_ROLES, SELL_ROLES = frozenset({"protective", "long"}), frozenset({"covered_short", "short"})
KINDS = ("single", "bull_put", "bear_call", "protective_put", "pair", "custom")
MAX_LEGS = 8
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9._:/-]{0,31}$")
COMMON = {"id", "kind", "account", "iv", "multiplier"}
KIND_KEYS = {
    "single": {"symbol", "side", "qty", "price", "role", "exits"},
    "bull_put": {"underlying", "expiry", "short_strike", "long_strike", "qty", "prices"},
    "bear_call": {"underlying", "expiry", "short_strike", "long_strike", "qty", "prices"},
    "protective_put": {"symbol", "qty", "expiry", "strike", "put_qty", "prices"},
    "pair": {"long", "short", "qty", "long_qty", "short_qty", "prices"},
    "custom": {"legs"},
}
LEG_KEYS = {"symbol", "side", "qty", "price", "role", "iv", "multiplier", "exits"}
#: ids of the groups ``run --drills`` submits (actors.demo_groups): deliberate failures,
#: so their alerts say DRILL
DRILL_ID_PREFIX = "demo-"


def is_drill(group_id: str) -> bool:
    return group_id.startswith(DRILL_ID_PREFIX)


class GroupSpecError(ValueError):
    """A group spec that cannot be traded; the message starts with the key to blame."""


@dataclass(frozen=True, slots=True)
class LegSpec:
    index: int                 # position in the spec (stable tie-break)
    symbol: Symbol
    side: str                  # "buy" / "sell"
    qty: Quantity
    role: str
    price: Price | None = None   # None: market order
    iv: Decimal | None = None
    multiplier: Decimal = Decimal(1)
    #: the leg's exit plan (``messages.orders.ExitPlan`` fields), protected by
    #: the stop manager once the leg fills
    exits: dict[str, Any] | None = None

    @property
    def exit_plan(self) -> ExitPlan | None:
        return ExitPlan(**self.exits) if self.exits else None

    @property
    def priority(self) -> int:
        return ROLE_PRIORITY[self.role]

    @property
    def sign(self) -> int:
        return 1 if self.side == "buy" else -1

    @property
    def option(self) -> OptionSpec | None:
        return parse_option(self.symbol)

    @property
    def underlying(self) -> str:
        opt = self.option
        return opt.underlying if opt is not None else self.symbol


@dataclass(frozen=True, slots=True)
class GroupSpec:
    group_id: str
    kind: str
    account: Account
    legs: tuple[LegSpec, ...]  # in submission (priority) order

    def as_dict(self) -> dict[str, Any]:
        """Plain, codec-able form (what the group record and ``custom`` accept)."""
        return {"id": self.group_id, "kind": "custom", "account": self.account,
                "legs": [{"symbol": g.symbol, "side": g.side, "qty": g.qty, "role": g.role,
                          **({"price": g.price} if g.price is not None else {}),
                          **({"iv": g.iv} if g.iv is not None else {}),
                          **({"exits": dict(g.exits)} if g.exits else {}),
                          "multiplier": g.multiplier} for g in sorted(self.legs,
                                                                      key=lambda g: g.index)]}


def plain_spec(value: Any) -> Any:
    """Dates to ISO text, floats to Decimal, lists to lists: what crosses the codec."""
    if isinstance(value, Mapping):
        return {str(k): plain_spec(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_spec(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()[:10]
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def parse_group(spec: Mapping[str, Any], *, default_id: str | None = None,
                default_account: str = "default") -> GroupSpec:
    """Validate ``spec`` into a GroupSpec with legs in priority order."""
    if not isinstance(spec, Mapping):
        raise GroupSpecError(f"group: expected a mapping, got {type(spec).__name__}")
    kind = spec.get("kind", "custom" if "legs" in spec else "single")
    if kind not in KINDS:
        raise GroupSpecError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    unknown = sorted(set(spec) - COMMON - KIND_KEYS[kind])
    if unknown:
        raise GroupSpecError(f"{unknown[0]}: unknown key for a {kind} group (known: "
                             f"{', '.join(sorted(COMMON | KIND_KEYS[kind]))})")
    gid = str(spec.get("id") or default_id or "")
    if not _ID.match(gid):
        raise GroupSpecError(f"id: {gid!r} must be letters, digits, '_', '.', '-' (at most 40)")
    account = str(spec.get("account") or default_account)
    common = {"iv": _dec(spec, "iv", positive=True, optional=True),
              "multiplier": _dec(spec, "multiplier", positive=True, optional=True) or Decimal(1)}
    raw = BUILDERS[kind](spec)
    if not raw:
        raise GroupSpecError("legs: a group needs at least one leg")
    if len(raw) > MAX_LEGS:
        raise GroupSpecError(f"legs: at most {MAX_LEGS} legs, got {len(raw)}")
    stray = sorted(set(spec.get("prices") or {}) - {leg.get("symbol") for leg in raw})
    if stray:
        raise GroupSpecError(f"prices.{stray[0]}: not a leg of this group "
                             f"({', '.join(str(leg.get('symbol')) for leg in raw)})")
    legs = []
    for i, leg in enumerate(raw):
        where = f"legs[{i}]." if kind == "custom" else ""
        legs.append(_leg(i, leg, where, common))
    symbols = [g.symbol for g in legs]
    dup = next((s for s in symbols if symbols.count(s) > 1), None)
    if dup:
        raise GroupSpecError(f"legs: {dup} appears twice (one leg per symbol)")
    legs = [_with_role(g, legs) for g in legs]
    legs.sort(key=lambda g: (g.priority, g.index))
    return GroupSpec(gid, kind, Account(account), tuple(legs))


# -- builders: spec -> raw leg dicts ----------------------------------------------------------


def _single(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{k: spec[k] for k in ("symbol", "side", "qty", "price", "role", "exits") if k in spec}]


def _vertical(right: str) -> Any:
    def build(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
        und = _symbol(spec, "underlying")
        short_k = _dec(spec, "short_strike", positive=True)
        long_k = _dec(spec, "long_strike", positive=True)
        if right == "P" and not long_k < short_k:
            raise GroupSpecError(f"long_strike: a bull put spread buys the lower strike "
                                 f"({long_k} is not below short_strike {short_k})")
        if right == "C" and not long_k > short_k:
            raise GroupSpecError(f"long_strike: a bear call spread buys the higher strike "
                                 f"({long_k} is not above short_strike {short_k})")
        expiry = _required(spec, "expiry")
        qty = _required(spec, "qty")
        try:
            long_sym = option_symbol(und, expiry, right, long_k)
            short_sym = option_symbol(und, expiry, right, short_k)
        except ValueError as exc:
            raise GroupSpecError(f"expiry: {exc}") from None
        prices = _prices(spec)
        # Written the way traders say it ("sell the 100, buy the 95"): the priority
        # sort, not the spec's order, puts the protection first.
        return [{"symbol": short_sym, "side": "sell", "qty": qty, "role": "covered_short",
                 **_price_of(prices, short_sym)},
                {"symbol": long_sym, "side": "buy", "qty": qty, "role": "protective",
                 **_price_of(prices, long_sym)}]
    return build


def _protective_put(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    sym = _symbol(spec, "symbol")
    qty = _required(spec, "qty")
    try:
        put = option_symbol(sym, _required(spec, "expiry"), "P",
                            _dec(spec, "strike", positive=True))
    except ValueError as exc:
        raise GroupSpecError(f"expiry: {exc}") from None
    prices = _prices(spec)
    return [{"symbol": sym, "side": "buy", "qty": qty, "role": "long", **_price_of(prices, sym)},
            {"symbol": put, "side": "buy", "qty": spec.get("put_qty", qty), "role": "protective",
             **_price_of(prices, put)}]


def _pair(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    long_sym, short_sym = _symbol(spec, "long"), _symbol(spec, "short")
    qty = spec.get("qty")
    lq, sq = spec.get("long_qty", qty), spec.get("short_qty", qty)
    if lq is None or sq is None:
        raise GroupSpecError("qty: a pair needs qty (or long_qty and short_qty)")
    prices = _prices(spec)
    return [{"symbol": short_sym, "side": "sell", "qty": sq, **_price_of(prices, short_sym)},
            {"symbol": long_sym, "side": "buy", "qty": lq, **_price_of(prices, long_sym)}]


def _custom(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    legs = spec.get("legs")
    if not isinstance(legs, (list, tuple)):
        raise GroupSpecError("legs: expected a list of legs")
    for i, leg in enumerate(legs):
        if not isinstance(leg, Mapping):
            raise GroupSpecError(f"legs[{i}]: expected a mapping")
        bad = sorted(set(leg) - LEG_KEYS)
        if bad:
            raise GroupSpecError(f"legs[{i}].{bad[0]}: unknown key (known: "
                                 f"{', '.join(sorted(LEG_KEYS))})")
    return [dict(leg) for leg in legs]


BUILDERS = {"single": _single, "bull_put": _vertical("P"), "bear_call": _vertical("C"),
            "protective_put": _protective_put, "pair": _pair, "custom": _custom}


# -- legs and roles ---------------------------------------------------------------------------


def _leg(i: int, raw: Mapping[str, Any], where: str, common: dict[str, Any]) -> LegSpec:
    symbol = _symbol(raw, "symbol", where)
    side = str(raw.get("side", "")).lower()
    if side not in ("buy", "sell"):
        raise GroupSpecError(f"{where}side: {raw.get('side')!r} must be buy or sell")
    role = raw.get("role")
    if role is not None and role not in ROLE_PRIORITY:
        raise GroupSpecError(f"{where}role: {role!r} is not one of {', '.join(ROLE_PRIORITY)}")
    if role in BUY_ROLES and side != "buy" or role in SELL_ROLES and side != "sell":
        raise GroupSpecError(f"{where}role: a {role} leg cannot {side}")
    return LegSpec(i, Symbol(symbol), side, _dec(raw, "qty", positive=True, where=where), role or "",
                   _dec(raw, "price", positive=True, optional=True, where=where),
                   _dec(raw, "iv", positive=True, optional=True, where=where) or common["iv"],
                   _dec(raw, "multiplier", positive=True, optional=True, where=where)
                   or common["multiplier"], _exits(raw.get("exits"), f"{where}exits."))


EXIT_FIELDS = ("stop_loss", "take_profit", "trailing_distance", "trailing_percent", "time_limit_s")


def _exits(raw: Any, where: str) -> dict[str, Any] | None:
    """A leg's exit plan, checked by building it (``ExitPlan`` names what is wrong)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise GroupSpecError(f"{where[:-1]}: expected a mapping of {', '.join(EXIT_FIELDS)}")
    unknown = sorted(set(raw) - set(EXIT_FIELDS))
    if unknown:
        raise GroupSpecError(f"{where}{unknown[0]}: unknown exit plan field")
    plan: dict[str, Any] = {}
    for name in EXIT_FIELDS[:4]:
        value = _dec(raw, name, positive=True, optional=True, where=where)
        if value is not None:
            plan[name] = value
    limit = raw.get("time_limit_s")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, float, Decimal)):
            raise GroupSpecError(f"{where}time_limit_s: {limit!r} is not a number of seconds")
        plan["time_limit_s"] = float(limit)
    try:
        ExitPlan(**plan)
    except MessageError as exc:
        raise GroupSpecError(f"{where[:-1]}: {exc}") from None
    return plan


def _with_role(leg: LegSpec, legs: list[LegSpec]) -> LegSpec:
    if leg.role:
        return leg
    others = [g for g in legs if g is not leg]
    covered = any(_covers(g, leg) for g in others if g.side != leg.side)
    if leg.side == "buy":
        role = "protective" if covered else "long"
    else:
        role = "covered_short" if covered else "short"
    return replace(leg, role=role)


def _covers(a: LegSpec, b: LegSpec) -> bool:
    """Does the buy among (a, b) limit the loss of the sell? Same underlying: an option
    of the same right, a call against short stock, a put against long stock."""
    buy, sell = (a, b) if a.side == "buy" else (b, a)
    bo, so = buy.option, sell.option
    if buy.underlying != sell.underlying:
        return False
    if bo is not None and so is not None:
        return bo.right == so.right
    if bo is not None:                  # option bought against the stock leg
        return bo.is_call               # a call caps a short stock
    if so is not None:                  # stock bought against a sold option
        return so.is_call               # covered call
    return False


# -- value helpers -----------------------------------------------------------------------------


def _required(spec: Mapping[str, Any], key: str, where: str = "") -> Any:
    if spec.get(key) is None:
        raise GroupSpecError(f"{where}{key}: required")
    return spec[key]


def _symbol(spec: Mapping[str, Any], key: str, where: str = "") -> str:
    value = _required(spec, key, where)
    if not isinstance(value, str) or not _SYMBOL.match(value):
        raise GroupSpecError(f"{where}{key}: {value!r} is not a symbol (upper case, at most 32)")
    return value


def _dec(spec: Mapping[str, Any], key: str, *, positive: bool = False, optional: bool = False,
         where: str = "") -> Any:
    value = spec.get(key)
    if value is None:
        if optional:
            return None
        raise GroupSpecError(f"{where}{key}: required")
    if isinstance(value, bool):
        raise GroupSpecError(f"{where}{key}: {value!r} is not a number")
    try:
        dec = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise GroupSpecError(f"{where}{key}: {value!r} is not a number") from None
    if not dec.is_finite() or (positive and dec <= 0):
        raise GroupSpecError(f"{where}{key}: {value!r} must be a positive number")
    return dec


def _prices(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    prices = spec.get("prices") or {}
    if not isinstance(prices, Mapping):
        raise GroupSpecError("prices: expected {SYMBOL: price}")
    return prices


def _price_of(prices: Mapping[str, Any], symbol: str) -> dict[str, Any]:
    return {"price": prices[symbol]} if symbol in prices else {}
