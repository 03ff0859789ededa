"""Checks a run makes at a real venue before it trades, and the figures it reads.

``run --venue`` calls :func:`preflight` before the actor tree starts (one
short-lived ccxt client on a loop of its own, closed afterwards): markets
loaded (the instrument rules the risk gate needs), every symbol listed, and
the account's position mode. Binance's dual-side (hedge) mode must match
``risk.hedging_mode`` for the account: in one-way mode the runtime nets, in
dual-side mode every order needs a position side; a mismatch would make
the venue refuse or, worse, open the side the runtime thinks it closes. A
mismatch refuses the start with what to change.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from exchange.ccxt_venue.errors import classify
from exchange.ccxt_venue.markets import rules_from_markets
from exchange.ccxt_venue.settings import VenueSettings


class StartRefused(Exception):
    """The venue is not in a state this run may trade in (the message says why)."""


@dataclass
class Preflight:
    hedge_mode: bool
    rules: dict[str, dict[str, str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def _client(settings: VenueSettings) -> Any:
    from exchange.ccxt_venue.client import make_exchange

    return make_exchange(api_key=settings.api_key, api_secret=settings.api_secret,
                         testnet=settings.testnet, urls=settings.urls,
                         recv_window_ms=settings.recv_window_ms, timeout_ms=settings.timeout_ms,
                         options=settings.options,
                         enable_rate_limit=settings.client_throttle,
                         close_wait_ms=settings.close_wait_ms)


async def _preflight(settings: VenueSettings, symbols: list[str]) -> Preflight:
    ex = _client(settings)
    try:
        await ex.load_markets()
        mode = await ex.fetch_position_mode()
        rules = rules_from_markets(ex.markets, symbols)
        return Preflight(bool(mode.get("hedged")), rules, [s for s in symbols if s not in rules])
    finally:
        await ex.close()


async def _positions(settings: VenueSettings) -> dict[str, Decimal]:
    from exchange.ccxt_venue.queries import positions_snapshot
    from messages import utc_now

    rows = await _position_rows(settings)
    return positions_snapshot(rows, "end", settings.account, utc_now()).as_dict()


async def _legs(settings: VenueSettings) -> dict[tuple[str, str], Decimal]:
    return legs_of(await _position_rows(settings))


async def _position_rows(settings: VenueSettings) -> list[dict[str, Any]]:
    """The venue's position rows (Binance's own shape, ccxt's ``info``), read
    by a client of their own that is closed whatever happens."""
    ex = _client(settings)
    try:
        await ex.load_markets()
        raw = await ex.fetch_positions()
    finally:
        await ex.close()
    return [r.get("info", r) for r in raw if isinstance(r, dict)]


def legs_of(rows: list[dict[str, Any]]) -> dict[tuple[str, str], Decimal]:
    """(symbol, LONG | SHORT) -> signed quantity of each open dual-side leg
    (SHORT negative, however the venue signs it); one-way rows are not legs."""
    legs: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        side = str(row.get("positionSide") or "BOTH").upper()
        raw = row.get("positionAmt")
        if side not in ("LONG", "SHORT") or raw in (None, ""):
            continue
        amt = abs(Decimal(str(raw)))
        if not amt.is_finite():
            raise ValueError(f"position {row.get('symbol')}: positionAmt {raw!r}")
        if amt:
            legs[(str(row.get("symbol")), side)] = amt if side == "LONG" else -amt
    return legs


def _run(coro: Any, timeout: float) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def preflight(settings: VenueSettings, symbols: list[str], *, timeout: float = 30.0) -> Preflight:
    """Markets and position mode; StartRefused if the venue cannot be read."""
    try:
        pre: Preflight = _run(_preflight(settings, symbols), timeout)
        return pre
    except TimeoutError:
        raise StartRefused(f"{settings.exchange_id}: no answer within {timeout:g}s") from None
    except Exception as exc:  # noqa: BLE001 - every failure is one clear refusal
        raise StartRefused(f"{settings.exchange_id}: {classify(exc).reason()}") from None


def venue_positions(settings: VenueSettings, *, timeout: float = 30.0) -> dict[str, Decimal]:
    """The account's net positions at the venue now (for the end-of-run check)."""
    positions: dict[str, Decimal] = _run(_positions(settings), timeout)
    return positions


def venue_legs(settings: VenueSettings, *, timeout: float = 30.0) -> dict[tuple[str, str], Decimal]:
    """The account's open dual-side legs at the venue now (hedge mode)."""
    legs: dict[tuple[str, str], Decimal] = _run(_legs(settings), timeout)
    return legs


def check_start(pre: Preflight, *, hedge_mode: bool, account: str, exchange_id: str) -> None:
    """Refuse a venue whose position mode or listings do not fit the run."""
    if pre.missing:
        raise StartRefused(f"{exchange_id} does not list {', '.join(pre.missing)}: trade only "
                           f"symbols the venue lists (--symbols)")
    if pre.hedge_mode and not hedge_mode:
        raise StartRefused(
            f"the {exchange_id} account is in hedge (dual-side) position mode but "
            f"risk.hedging_mode has {account}: off. Switch the account to one-way mode at the "
            f"venue (Binance: Preferences > Position Mode > One-way) or set "
            f"risk.hedging_mode: {{{account}: true}}")
    if hedge_mode and not pre.hedge_mode:
        raise StartRefused(
            f"risk.hedging_mode has {account}: true but the {exchange_id} account is in one-way "
            f"position mode. Switch the account to hedge mode at the venue (Binance: "
            f"Preferences > Position Mode > Hedge) or set risk.hedging_mode: {{{account}: false}}")
