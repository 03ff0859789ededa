"""Hedge (dual-side) position mode at the Binance face, through the real ccxt.

Binance's rules (USDⓈ-M "New Order" and "Change Position Mode"): in dual-side
mode every order names its leg (``positionSide`` LONG / SHORT), ``reduceOnly``
cannot be sent, a closing order is reduce-only by its leg; one-way orders
name ``BOTH`` or nothing; the mode changes only with no open order and no
position. The face keeps the legs beside the engine's net position.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from exchange.binance_face.server import BinanceFaceServer
from tests.test_binance_face import KEY_A, KEY_B, SYM, USYM, events, quote, rest_client, run

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def face(tmp_path: Path) -> Iterator[BinanceFaceServer]:
    srv = BinanceFaceServer(config={"quote_currency": "USDT", "symbols": [SYM, "ETHUSDT"]},
                            out_dir=tmp_path, keys=[KEY_A, KEY_B])
    srv.start()
    srv.push(quote("100", "100.1", size="1000"))
    yield srv
    srv.stop()


def _legs(rows: list[dict[str, Any]], symbol: str = SYM) -> dict[str, Decimal]:
    return {r["info"]["positionSide"]: Decimal(r["info"]["positionAmt"])
            for r in rows if r["info"]["symbol"] == symbol}


def _code(exc: BaseException) -> int | None:
    import json

    text = str(exc)
    start = text.find("{")
    try:
        return int(json.loads(text[start:])["code"]) if start >= 0 else None
    except (ValueError, KeyError):
        return None


def test_position_mode_switches_as_binance_allows(face: BinanceFaceServer) -> None:
    async def go() -> list[Any]:
        out: list[Any] = []
        async with rest_client(face) as ex:
            out.append((await ex.fetch_position_mode(USYM))["hedged"])
            await ex.create_order(USYM, "market", "buy", 1)  # a position: no switch
            try:
                await ex.set_position_mode(True)
            except ccxt.BaseError as exc:
                out.append(_code(exc))
            await ex.create_order(USYM, "market", "sell", 1, None, {"reduceOnly": True})
            await ex.create_order(USYM, "limit", "buy", 1, 90)  # an open order: no switch
            try:
                await ex.set_position_mode(True)
            except ccxt.BaseError as exc:
                out.append(_code(exc))
            await ex.cancel_all_orders(USYM)
            await ex.set_position_mode(True)
            out.append((await ex.fetch_position_mode(USYM))["hedged"])
            try:
                await ex.set_position_mode(True)
            except ccxt.BaseError as exc:
                out.append(_code(exc))
        async with rest_client(face, KEY_B) as other:  # the mode is per account
            out.append((await other.fetch_position_mode(USYM))["hedged"])
        return out

    assert run(go()) == [False, -4068, -4067, True, -4059, False]
    modes = events(face, "position_mode")
    assert [(e["account"], e["dual_side_position"]) for e in modes] == [("acct-a", True)]


def test_dual_side_orders_keep_two_legs(face: BinanceFaceServer) -> None:
    """BUY/LONG and SELL/SHORT open, SELL/LONG and BUY/SHORT close; positionRisk
    shows each leg (SHORT negative) while the engine nets LONG - SHORT."""
    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with rest_client(face) as ex:
            await ex.set_position_mode(True)
            a = await ex.create_order(USYM, "market", "buy", 2, None, {"positionSide": "LONG"})
            out["answer_side"] = a["info"]["positionSide"]
            await ex.create_order(USYM, "market", "sell", 1, None, {"positionSide": "SHORT"})
            out["both_open"] = _legs(await ex.fetch_positions([USYM]))
            refused = {}
            for name, side, qty, params in (
                    ("reduce_only", "sell", 1, {"positionSide": "LONG", "reduceOnly": True}),
                    ("both", "buy", 1, {"positionSide": "BOTH"}),
                    ("no_side", "buy", 1, {}),
                    ("beyond_leg", "sell", 3, {"positionSide": "LONG"})):
                try:
                    await ex.create_order(USYM, "market", side, qty, None, params)
                except ccxt.BaseError as exc:
                    refused[name] = _code(exc)
            out["refused"] = refused
            # a resting close takes its quantity from the leg
            await ex.create_order(USYM, "limit", "sell", 1, 150, {"positionSide": "LONG"})
            try:
                await ex.create_order(USYM, "limit", "sell", 2, 150, {"positionSide": "LONG"})
            except ccxt.BaseError as exc:
                refused["leg_taken"] = _code(exc)
            await ex.cancel_all_orders(USYM)
            await ex.create_order(USYM, "market", "buy", 1, None, {"positionSide": "SHORT"})
            await ex.create_order(USYM, "market", "sell", 1, None, {"positionSide": "LONG"})
            out["after_closes"] = _legs(await ex.fetch_positions([USYM]))
            trades = await ex.fetch_my_trades(USYM)
            out["trade_sides"] = [t["info"]["positionSide"] for t in trades]
            acct = await ex.fapiPrivateV2GetAccount()
            out["account"] = {p["positionSide"]: p["positionAmt"] for p in acct["positions"]
                              if p["symbol"] == SYM}
        return out

    got = run(go())
    assert got["answer_side"] == "LONG"
    assert got["both_open"] == {"LONG": Decimal("2"), "SHORT": Decimal("-1")}
    assert got["refused"] == {"reduce_only": -1106, "both": -4061, "no_side": -4061,
                              "beyond_leg": -2022, "leg_taken": -2022}
    assert got["after_closes"] == {"LONG": Decimal("1")}  # (v3 lists open legs only)
    assert got["trade_sides"] == ["LONG", "SHORT", "SHORT", "LONG"]
    assert {k: Decimal(v) for k, v in got["account"].items()} == \
        {"LONG": Decimal("1"), "SHORT": Decimal("0")}
    net = face.call(lambda: face.engine.positions("acct-a")).result(5)
    assert net[SYM] == Decimal("1")  # the engine's net = LONG - SHORT


def test_a_wiped_exchange_forgets_modes_and_legs(face: BinanceFaceServer) -> None:
    """``restart: {wipe: true}`` loses every account: the account is one-way
    and flat again, no stale leg survives the engine's new epoch."""
    async def before() -> None:
        async with rest_client(face) as ex:
            await ex.set_position_mode(True)
            await ex.create_order(USYM, "market", "buy", 2, None, {"positionSide": "LONG"})

    async def after() -> tuple[bool, list[dict[str, Any]]]:
        async with rest_client(face) as ex:
            mode = (await ex.fetch_position_mode(USYM))["hedged"]
            return mode, list(await ex.fapiPrivateV2GetPositionRisk())

    run(before())
    face.inject({"restart": {"wipe": True}})
    face.push(quote("100", "100.1", size="1000"))
    hedged, rows = run(after())
    assert hedged is False
    assert {r["positionSide"] for r in rows} == {"BOTH"}
    assert all(Decimal(r["positionAmt"]) == 0 for r in rows)


def test_one_way_account_refuses_a_leg(face: BinanceFaceServer) -> None:
    async def go() -> int | None:
        async with rest_client(face) as ex:
            try:
                await ex.create_order(USYM, "market", "buy", 1, None, {"positionSide": "LONG"})
            except ccxt.BaseError as exc:
                return _code(exc)
        return None

    assert run(go()) == -4061


def test_adapter_in_hedge_mode_names_the_leg_and_never_sends_reduce_only(
        tmp_path: Path) -> None:
    """The ccxt adapter with hedge_mode on: an opening order goes to its side's
    leg, a reduce-only exit closes the opposite leg with positionSide and
    without reduceOnly (which the venue refuses in dual-side mode), stop
    orders through the algo service too; the positions snapshot is the net
    of the legs."""
    from messages import OrderFilled, OrderRequest, OrderType, PositionSnapshot, Side, utc_now
    from messages.exchange import OpenOrdersSnapshot, QueryOpenOrders, QueryPositions, SubmitOrder
    from messages import OrderAcked, OrderRejected
    from tests.ccxt_face import KEY, connected_adapter, face_server

    def req(n: int, side: Side, qty: str, otype: OrderType = OrderType.MARKET,
            **kw: Any) -> OrderRequest:
        return OrderRequest(f"default-hedge-{n}", "BTCUSDT", side, otype, Decimal(qty),
                            utc_now(), **kw)

    with face_server(tmp_path) as srv:
        async def dual() -> None:
            async with rest_client(srv, KEY) as ex:
                await ex.set_position_mode(True)
        run(dual())
        with connected_adapter(srv, hedge_mode=True) as (ad, evs):
            for r in (req(1, Side.BUY, "2"), req(2, Side.SELL, "1"),
                      req(3, Side.SELL, "1", reduce_only=True)):
                ad.send(SubmitOrder(r))
                evs.wait_for(lambda e, c=r.client_order_id: isinstance(e, OrderFilled)
                             and e.client_order_id == c and e.leaves_qty == 0)
            stop = req(4, Side.BUY, "1", OrderType.STOP_MARKET, trigger_price=Decimal("150"),
                       reduce_only=True)
            ad.send(SubmitOrder(stop))
            evs.wait_for(lambda e: isinstance(e, OrderAcked)
                         and e.client_order_id == stop.client_order_id)
            ad.send(QueryPositions("p1"))
            snap = evs.wait_for(lambda e: isinstance(e, PositionSnapshot))
            ad.send(QueryOpenOrders("o1"))
            open_ = evs.wait_for(lambda e: isinstance(e, OpenOrdersSnapshot))
            assert evs.of(OrderRejected) == []
        modes = srv.face.modes
        sides = {c: modes.side_of(c) for c in (f"default-hedge-{n}" for n in range(1, 5))}
        legs = {ps: qty for ps, qty, _ in modes.rows("default", "BTCUSDT")}
    assert sides == {"default-hedge-1": "LONG", "default-hedge-2": "SHORT",
                     "default-hedge-3": "LONG", "default-hedge-4": "SHORT"}
    assert legs == {"LONG": Decimal("1"), "SHORT": Decimal("-1")}
    assert snap.as_dict() == {}, "the runtime sees the net of the legs: flat"
    assert [o.client_order_id for o in open_.orders] == [stop.client_order_id]
    assert open_.orders[0].reduce_only, "closing its leg: reduce-only, though not flagged"


# -- a whole run, and its start, in hedge mode through ccxt -------------------------------------


def _dual(face: BinanceFaceServer, on: bool = True) -> None:
    """Switch the face's default account like an operator would (through ccxt)."""
    from tests.ccxt_face import KEY

    async def go() -> None:
        async with rest_client(face, KEY) as ex:
            await ex.set_position_mode(on)
    run(go())


def _venue_legs(face: BinanceFaceServer) -> dict[tuple[str, str], Decimal]:
    """(symbol, leg) -> positionAmt, as the venue reports it through ccxt."""
    from tests.ccxt_face import KEY

    async def go() -> list[dict[str, Any]]:
        async with rest_client(face, KEY) as ex:
            return list(await ex.fapiPrivateV2GetPositionRisk())
    return {(r["symbol"], r["positionSide"]): Decimal(r["positionAmt"]) for r in run(go())
            if Decimal(r["positionAmt"]) != 0}


def test_run_in_hedge_mode_through_ccxt_ends_with_the_venues_legs(tmp_path: Path) -> None:
    """``run --venue`` with ``risk.hedging_mode`` on, at a dual-side account:
    every order names its leg, none is refused for its position side or a
    reduceOnly, the run's fills make exactly the venue's LONG and SHORT legs,
    its net positions are the venue's, and every invariant holds."""
    import json

    from app.invariants import check_all
    from app.position_legs import to_json
    from tests.ccxt_face import KEY, events_jsonl, run_venue
    from tests.test_ccxt_runtime import TRADE_LAYER, _face

    face = _face(tmp_path)
    try:
        _dual(face)
        layer = {**TRADE_LAYER, "risk": {**TRADE_LAYER["risk"],
                                         "hedging_mode": {"default": True}}}
        rc, output, run_dir = run_venue(tmp_path, face, key=KEY.key, secret=KEY.secret,
                                        duration=15, layer=layer)
        venue_legs = _venue_legs(face)
    finally:
        face.stop()
    assert rc == 0, output[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["invariant_violations"] == [] and summary["checks_not_run"] == {}, summary
    events = [e for e in events_jsonl(tmp_path / "face") if e["t"] <= summary["ended_at"]]
    fills = [e for e in events if e["kind"] == "order_filled"]
    assert fills, "the demo strategy traded through ccxt"
    refused = [e for e in events if e["kind"] == "request_refused"]
    assert not [e for e in refused if e.get("code") in (-4061, -1106)], refused
    assert not [e for e in events if e["kind"] == "hedge_leg_overrun"]
    # the summary compared the run's legs with the venue's (positions_match)
    legs = summary["position_legs"]
    assert legs["runtime"] == legs["exchange"] == to_json(venue_legs)
    net: dict[str, Decimal] = {}
    for (sym, _), q in venue_legs.items():
        net[sym] = net.get(sym, Decimal(0)) + q
    held = {s: Decimal(q) for s, q in summary["positions"].items() if Decimal(q) != 0}
    assert held == {s: q for s, q in net.items() if q != 0}
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    assert check_all(events=events, audit=audit, positions=summary["positions"],
                     exchange_positions=net, hedging_accounts=frozenset({"default"}),
                     fail_closed=True, dead_letters=[]) == []


def test_hedge_account_with_hedging_off_refuses_to_start(tmp_path: Path) -> None:
    """The other direction of the start-up check: the venue account is in
    dual-side mode but risk.hedging_mode is off for it; the run must not
    start (exit 2) and must say what to change, nothing written."""
    from tests.ccxt_face import KEY, run_venue
    from tests.test_ccxt_runtime import _face

    face = _face(tmp_path)
    try:
        _dual(face)
        rc, output, run_dir = run_venue(tmp_path, face, key=KEY.key, secret=KEY.secret,
                                        duration=2)
    finally:
        face.stop()
    assert rc == 2, output[-2000:]
    assert "hedge (dual-side)" in output and "One-way" in output, output[-2000:]
    assert "risk.hedging_mode: {default: true}" in output
    assert not (run_dir / "summary.json").exists()


def test_legs_opened_behind_the_runtimes_back_break_positions_match(tmp_path: Path) -> None:
    """Net flat is not flat in hedge mode: while the run trades, another client
    of the same account opens a LONG and a SHORT leg of one size (the net,
    all the runtime books and reconciles, does not move). The run's end
    compares legs, finds both, and fails positions_match (exit 1)."""
    import json
    import time

    from tests.ccxt_face import KEY, events_jsonl, run_venue
    from tests.test_ccxt_runtime import TRADE_LAYER, _face

    face = _face(tmp_path)

    def behind_its_back() -> None:
        deadline = time.monotonic() + 20
        while not any(e["kind"] == "order_filled" for e in events_jsonl(tmp_path / "face")):
            assert time.monotonic() < deadline, "the run did not trade"
            time.sleep(0.1)

        async def go() -> None:
            async with rest_client(face, KEY) as ex:
                for side, leg in (("buy", "LONG"), ("sell", "SHORT")):
                    await ex.create_order("ETH/USDT:USDT", "market", side, 3, None,
                                          {"positionSide": leg, "newClientOrderId": f"x-{leg}"})
        run(go())

    try:
        _dual(face)
        layer = {**TRADE_LAYER, "risk": {**TRADE_LAYER["risk"],
                                         "hedging_mode": {"default": True}}}
        rc, output, run_dir = run_venue(tmp_path, face, key=KEY.key, secret=KEY.secret,
                                        duration=10, layer=layer, during=behind_its_back)
    finally:
        face.stop()
    assert rc == 1, output[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    legs = [v for v in summary["invariant_violations"] if v.get("position_side")]
    assert summary["checks"]["positions_match"] == "violated", summary["invariant_violations"]
    assert {(v["symbol"], v["position_side"]) for v in legs} >= \
        {("ETHUSDT", "LONG"), ("ETHUSDT", "SHORT")}, legs
