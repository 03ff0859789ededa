"""DESIGN rule 18, trust nothing from outside: hostile numbers, foreign
accounts, unsolicited snapshots, unconfirmed divergences, takeover prices.

Unit tests of the pure checks (``messages.bounds``, ``trading.trust``,
``config.bounds``), of the simulated exchange's door, and of a whole runtime
on a virtual clock (``tests.test_coordinator.Rig``) fed what a hostile
exchange would send.
"""

from __future__ import annotations

import decimal
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, load_config
from exchange.engine import SimulatedExchange
from messages.bounds import (DEFAULT_BOUNDS, Bounds, NumberBounds, bounds_from_config,
                             event_problem, notional_problem, order_problem,
                             price_problem, qty_problem)
from messages.control import BrokerPositions
from messages.enums import OrderType, Side
from messages.exchange import ExchangeFault, FillsSnapshot, SubmitOrder
from messages.market import Quote
from messages.orders import CancelOrder, OrderFilled, OrderRequest, PositionSnapshot, Signal
from runtime.clock import EPOCH_DEFAULT
from tests.test_coordinator import BTC, DEEP, ETH, Rig
from trading.trust import (FOREIGN_ACCOUNT, IGNORED, OUT_OF_RANGE, REJECTED, UNKNOWN_ORDER,
                           UNSOLICITED, AskedIds, TrustTally, foreign_account)

pytestmark = pytest.mark.timeout(60)

ABSURD = D("9E+999999")
NOW = EPOCH_DEFAULT
B = NumberBounds()


# -- messages.bounds: single numbers --------------------------------------------------


@pytest.mark.parametrize("value, needle", [
    (ABSURD, "exponent 999999"),
    (D("1E-999999"), "exponent -999999"),
    (D("2E+9"), "above the sane maximum"),
    (D("1E-13"), "below the sane minimum"),
    (D("1." + "0" * 40 + "1"), "significant digits"),
    (D("-1"), "must be positive"),
    (D("0"), "must not be zero"),
    (D("NaN"), "not finite"),
    (D("Infinity"), "not finite"),
    (1.5, "expected a decimal"),
])
def test_a_price_out_of_range_is_named(value: Any, needle: str) -> None:
    problem = price_problem(value, "Quote.bid", B)
    assert problem is not None and needle in problem and problem.startswith("Quote.bid")


@pytest.mark.parametrize("bid", ["9E+999999", "1E-13", "1." + "0" * 40 + "1", "2E+9", "-1"])
def test_the_quote_fast_path_agrees_with_the_full_check(bid: str) -> None:
    from messages.bounds import fast_ok

    assert fast_ok(D(bid), B, B.min_price, B.max_price) is (bid == "-1")  # sign: the caller's
    quote = Quote(BTC, D("100"), D("100.1"), NOW)
    object.__setattr__(quote, "bid", D(bid))  # past the constructor, as a decoder bug would
    assert event_problem(quote) is not None


_QUOTE_VALUES = ["100", "100.1", "0", "-0", "-1", "1E-13", "1E-15", "1E-16", "2E+9", "1E+9",
                 "1E+12", "2E+12", "9E+999999", "1." + "0" * 40 + "1", "NaN", "sNaN", "Infinity",
                 "-Infinity", 1.5, None]


@pytest.mark.parametrize("field", ["bid", "ask", "bid_size", "ask_size"])
@pytest.mark.parametrize("value", _QUOTE_VALUES)
def test_the_quote_check_agrees_with_the_number_by_number_checks(field: str, value: Any) -> None:
    """quote_ok (one call per quote) says what fast_ok and the signs say of each number."""
    from messages.bounds import fast_ok, quote_ok

    quote = Quote(BTC, D("100"), D("100.1"), NOW, D("5"), D("7"))
    bad = D(value) if isinstance(value, str) else value
    object.__setattr__(quote, field, bad)  # past the constructor, as a decoder bug would
    b = B
    try:
        expected = (fast_ok(quote.bid, b, b.min_price, b.max_price) and quote.bid > 0
                    and fast_ok(quote.ask, b, b.min_price, b.max_price) and quote.ask > 0
                    and fast_ok(quote.bid_size, b, None, b.max_qty) and quote.bid_size >= 0
                    and fast_ok(quote.ask_size, b, None, b.max_qty) and quote.ask_size >= 0)
    except Exception:  # noqa: BLE001 - a comparison the number-by-number path cannot make
        expected = False
    assert quote_ok(quote, b) is bool(expected)
    assert (event_problem(quote) is None) is bool(expected)


def test_believable_numbers_pass() -> None:
    assert price_problem(D("67123.45"), "price", B) is None
    assert price_problem(D("0.00001234"), "price", B) is None
    assert qty_problem(D("0"), "leaves", B, zero=True) is None
    assert qty_problem(D("-7"), "position", B, signed=True) is None
    assert notional_problem(D("100"), D("67000"), "notional", B) is None


def test_a_huge_number_is_shown_truncated() -> None:
    problem = price_problem(D("1" * 5000), "price", B)
    assert problem is not None and len(problem) < 200


def test_notional_traps_instead_of_overflowing() -> None:
    wide = NumberBounds(max_price=D("1E+50"), max_qty=D("1E+50"), max_notional=D("1E+13"),
                        max_exponent=60)
    problem = notional_problem(D("1E+50"), D("1E+50"), "notional", wide)
    assert problem is not None and "not computable" in problem  # Overflow trapped, not inf
    assert "above the sane maximum" in notional_problem(D("1E+6"), D("1E+8"), "notional", B)


def test_number_bounds_refuse_an_unusable_range() -> None:
    with pytest.raises(ValueError, match="min_price"):
        NumberBounds(min_price=D("10"), max_price=D("1"))
    with pytest.raises(ValueError, match="max_exponent"):
        NumberBounds(max_price=D("1E+20"))
    with pytest.raises(ValueError, match="max_digits"):
        NumberBounds(max_digits=0)


# -- messages.bounds: whole events ---------------------------------------------------


def fill(price: str = "100", qty: str = "1", account: str = "default",
         coid: str = "c-1", fill_id: str = "F1") -> OrderFilled:
    return OrderFilled(coid, fill_id, BTC, Side.BUY, D(qty), D(price), D("0"), NOW,
                       account=account)


def test_event_problem_checks_every_number_of_an_event() -> None:
    assert event_problem(Quote(BTC, D("100"), D("100.1"), NOW)) is None
    assert "Quote.ask" in event_problem(Quote(BTC, D("100"), ABSURD, NOW))
    assert "OrderFilled.price" in event_problem(fill(price="9E+999999"))
    assert "OrderFilled.notional" in event_problem(fill(price="1E+8", qty="1E+6"))
    snap = PositionSnapshot("default", ((BTC, D("1")), (ETH, ABSURD)), NOW, request_id="r")
    assert "positions[1] (ETHUSDT)" in event_problem(snap)
    nested = FillsSnapshot("r", "default", (fill(), fill(price="9E+999999", fill_id="F2")), 2, NOW)
    assert "FillsSnapshot.fills[1].price" in event_problem(nested)


def test_a_snapshot_with_too_many_entries_is_refused_whole() -> None:
    big = PositionSnapshot("default", tuple((f"S{i}", D("0")) for i in range(30_000)), NOW,
                           request_id="r")
    assert "30000 entries" in event_problem(big)
    assert event_problem(big, Bounds(max_snapshot_entries=50_000)) is None


def test_per_symbol_bounds_narrow_one_instrument() -> None:
    bounds = Bounds(per_symbol={BTC: NumberBounds(min_price=D("1000"), max_price=D("1E+7"))})
    assert event_problem(Quote(BTC, D("100"), D("100.1"), NOW), bounds) is not None
    assert event_problem(Quote(ETH, D("100"), D("100.1"), NOW), bounds) is None


def test_order_problem_prices_a_market_order_at_the_mark() -> None:
    req = OrderRequest("c", BTC, Side.BUY, OrderType.MARKET, D("1E+6"), NOW)
    assert order_problem(req) is None                        # no mark: no notional to judge
    assert "notional" in order_problem(req, DEFAULT_BOUNDS, D("1E+8"))


# -- config.bounds --------------------------------------------------------------------


def test_config_bounds_default_and_per_symbol() -> None:
    cfg = load_config(overrides={"bounds": {"per_symbol": {BTC: {"max_price": "1E+7"}}}})
    bounds = bounds_from_config(cfg.bounds)
    assert bounds.default == NumberBounds()
    assert bounds.for_symbol(BTC).max_price == D("1E+7")
    assert bounds.for_symbol(ETH).max_price == D("1E+9")


@pytest.mark.parametrize("bad, key", [
    ({"min_price": "5", "max_price": "1"}, "bounds.min_price"),
    ({"max_price": "1E+30"}, "bounds.max_price"),
    ({"per_symbol": {BTC: {"min_price": "2E+9"}}}, "per_symbol.BTCUSDT.min_price"),
    ({"max_digits": 99}, "bounds.max_digits"),
    ({"max_qty": "NaN"}, "bounds.max_qty"),
])
def test_config_bounds_are_validated(bad: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"bounds": bad})
    assert key in str(err.value)


# -- trading.trust ---------------------------------------------------------------------


def test_tally_counts_everything_and_reports_a_bounded_few() -> None:
    tally = TrustTally(first=3, every=100)
    reported = sum(tally.add(REJECTED, OUT_OF_RANGE) for _ in range(1000))
    assert tally.counts[(REJECTED, OUT_OF_RANGE)] == 1000
    assert reported == 3 + 10  # the first three, then every hundredth
    assert tally.as_dict() == {REJECTED: {OUT_OF_RANGE: 1000}, IGNORED: {}}


def test_foreign_account_of_fills_and_snapshots() -> None:
    mine = frozenset({"alpha"})
    assert foreign_account(fill(account="beta"), mine) == "beta"
    assert foreign_account(fill(account="alpha"), mine) is None
    assert foreign_account(PositionSnapshot("beta", (), NOW, request_id="r"), mine) == "beta"
    mixed = FillsSnapshot("r", "alpha", (fill(account="alpha"), fill(account="beta")), 2, NOW)
    assert foreign_account(mixed, mine) == "beta"
    assert foreign_account(Quote(BTC, D("1"), D("2"), NOW), mine) is None


def test_asked_ids_are_bounded() -> None:
    asked = AskedIds(keep=2)
    for rid in ("a", "b", "c"):
        asked.add(rid)
    assert "a" not in asked and "b" in asked and "c" in asked


# -- the simulated exchange's door ---------------------------------------------------


def engine() -> SimulatedExchange:
    ex = SimulatedExchange({"latency_ms": 0}).start()
    ex.handle(Quote(BTC, D("100"), D("100.1"), NOW, bid_size=DEEP, ask_size=DEEP), NOW)
    return ex


def submit(ex: SimulatedExchange, coid: str, price: D | None = None, account: str = "default",
           session: str | None = None) -> list[Any]:
    otype = OrderType.LIMIT if price is not None else OrderType.MARKET
    req = OrderRequest(coid, BTC, Side.BUY, otype, D("1"), NOW, price=price, account=account)
    return [e.event for e in ex.handle(SubmitOrder(req), NOW, account=session)]


def test_an_absurd_order_is_refused_and_the_book_stays_usable() -> None:
    """One order at 9E+999999 used to rest, overflow every later match and
    poison BTCUSDT for every client."""
    ex = engine()
    out = submit(ex, "evil-1", price=ABSURD)
    assert type(out[0]).__name__ == "OrderRejected" and out[0].reason.startswith("out_of_range")
    ex.handle(Quote(BTC, D("100.2"), D("100.3"), NOW, bid_size=DEEP, ask_size=DEEP), NOW)
    out = submit(ex, "good-1")
    assert [type(e).__name__ for e in out] == ["OrderAcked", "OrderFilled"]
    assert ex.stats["internal_errors"] == 0
    assert ex.positions() == {BTC: D("1")}


def test_absurd_market_data_never_reaches_the_book() -> None:
    ex = engine()
    out = ex.handle(Quote(BTC, ABSURD, ABSURD, NOW), NOW)
    assert out[0].event.code == "out_of_range" and "Quote.bid" in out[0].event.reason
    assert ex.book(BTC).bid == D("100") and ex.stats["market_data_refused"] == 1


def test_faults_cannot_inject_absurd_numbers_either() -> None:
    ex = engine()
    out = ex.apply({"gap_price": {"symbol": BTC, "price": "9E+999999"}}, NOW)
    assert out[0].event.code == "bad_fault" and "gap_price" in out[0].event.reason
    out = ex.apply({"set_position": {"symbol": BTC, "qty": "9E+999999"}}, NOW)
    assert out[0].event.code == "bad_fault" and ex.positions() == {}
    assert ex.book(BTC).bid == D("100")


def test_a_session_trades_only_its_own_account() -> None:
    ex = engine()
    out = submit(ex, "b-1", account="beta", session="alpha")
    assert out[0].reason.startswith("account_mismatch")
    resting = submit(ex, "b-2", price=D("90"), account="beta", session="beta")
    assert type(resting[0]).__name__ == "OrderAcked"
    emits = ex.handle(CancelOrder("b-2", BTC, NOW), NOW, account="alpha")
    assert emits[0].event.outcome.value == "unknown" and emits[0].account == "alpha"
    assert ex.order("b-2").status == "working"  # alpha cannot cancel beta's order
    fills = [e for e in ex.handle(SubmitOrder(OrderRequest(
        "a-1", BTC, Side.BUY, OrderType.MARKET, D("1"), NOW, account="alpha")), NOW,
        account="alpha")]
    assert {e.account for e in fills} == {"alpha"}
    from exchange.session import Session

    alpha_session, beta_session = Session("a", "alpha"), Session("b", "beta")
    assert all(alpha_session.wants(e) and not beta_session.wants(e) for e in fills)
    unbound = Session("u")
    assert not unbound.wants(fills[0]) and unbound.bind(SubmitOrder(OrderRequest(
        "u-1", BTC, Side.BUY, OrderType.MARKET, D("1"), NOW, account="beta"))) == "beta"


# -- a whole runtime fed hostile input -----------------------------------------------


@pytest.fixture
def rig(tmp_path: Path):
    made: list[Rig] = []

    def make(**kw: Any) -> Rig:
        r = Rig(tmp_path / f"run{len(made)}", **kw)
        made.append(r)
        return r.start()

    yield make
    for r in made:
        r.stop()


def restarts(r: Rig) -> int:
    return sum(cell.restarts for cell in r.system.directory.cells())


def untrusted(r: Rig, reason: str) -> list[dict]:
    return [a for a in r.audit() if a["kind"] == "untrusted_input" and a["reason"] == reason]


def test_an_absurd_quote_is_rejected_at_the_gateway_and_crashes_nothing(rig) -> None:
    r = rig()
    r.quote()
    r.signal("buy", "2")
    r.advance(0.5)
    r.tell("gateway", Quote(BTC, ABSURD, ABSURD, r.clock.now()))
    r.advance(0.5)
    assert restarts(r) == 0 and r.coord["trading_state"] == "ACTIVE"
    assert r.rt.info("gateway")["trust"][REJECTED] == {OUT_OF_RANGE: 1}
    [rec] = untrusted(r, OUT_OF_RANGE)
    assert "Quote.bid" in rec["inputs"]["detail"]
    from prometheus_client import generate_latest

    from app.metrics import registry_for

    text = generate_latest(registry_for(r.rt)).decode()
    assert ('tradewarden_untrusted_inputs_total{actor="gateway",reason="out_of_range",verdict="rejected"} 1.0'
            in text), text


def test_a_flood_of_bad_input_is_counted_exactly_and_reported_bounded(rig) -> None:
    from loguru import logger

    r = rig()
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    try:
        for i in range(2500):
            r.tell("gateway", Quote(BTC, ABSURD, ABSURD, r.clock.now()))
            r.tell("gateway", fill(account="beta", coid=f"b-{i}", fill_id=f"BF{i}"))
        r.settle()
    finally:
        logger.remove(sink)
    trust = r.rt.info("gateway")["trust"]
    assert trust == {REJECTED: {OUT_OF_RANGE: 2500}, IGNORED: {FOREIGN_ACCOUNT: 2500}}
    # the first 20 of each reason, then the 1000th and the 2000th
    assert len(untrusted(r, OUT_OF_RANGE)) == len(untrusted(r, FOREIGN_ACCOUNT)) == 22
    assert sum(1 for line in lines if "gateway" in line) <= 2 * 22 + 5
    assert restarts(r) == 0


def test_an_absurd_quote_told_to_the_coordinator_is_dropped_not_crash_looped(rig) -> None:
    """Defence in depth: even past the gateway, the quote handler survives."""
    r = rig()
    r.quote()
    r.signal("buy", "2")
    r.advance(0.5)
    r.tell("coordinator", Quote(BTC, ABSURD, ABSURD, r.clock.now()))
    r.advance(0.5)
    assert restarts(r) == 0
    assert r.coord["counts"]["quotes_not_computable"] == 1
    assert D(r.coord["daily_pnl"]).is_finite()


def test_an_absurd_signal_is_refused_by_the_gate(rig) -> None:
    r = rig()
    r.quote()
    r.signal("buy", ABSURD)
    r.signal("buy", "1", stop_loss=ABSURD)
    r.advance(0.5)
    assert r.reasons() == ["out_of_range", "out_of_range"]
    assert restarts(r) == 0 and r.position() == 0


def test_a_foreign_accounts_fill_is_ignored_counted_audited_and_alerted(rig) -> None:
    r = rig()
    r.quote()
    lines: list[str] = []
    from loguru import logger

    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    try:
        r.tell("gateway", fill(account="beta", coid="beta-x-1", qty="50", price="1"))
        r.advance(0.5)
    finally:
        logger.remove(sink)
    assert r.position() == 0 and D(r.coord["daily_pnl"]) == 0
    assert r.rt.info("gateway")["trust"][IGNORED] == {FOREIGN_ACCOUNT: 1}
    assert len(untrusted(r, FOREIGN_ACCOUNT)) == 1
    assert r.rt.info("alerts")["received"] == 1
    assert any("ALERT" in line and "foreign account" in line for line in lines), lines


def test_a_fill_of_an_order_never_sent_is_booked_only_through_reconciliation(rig) -> None:
    """Another client on the same account trades at the exchange: its fill
    reaches this runtime, which must not book it as its own fill, but takes
    the position over once two answers of the broker confirm it."""
    r = rig()
    r.quote()
    other = OrderRequest("other-client-1", BTC, Side.BUY, OrderType.MARKET, D("3"),
                         r.clock.now())
    r.tell("venue", SubmitOrder(other))   # same account, not through this coordinator
    r.advance(1.0)
    assert r.coord["counts"]["unknown_order_fills"] == 1
    assert r.coord["trust"][IGNORED] == {UNKNOWN_ORDER: 2}  # its ack and its fill
    assert r.position() == 3 == r.exchange_position()        # ... through reconciliation
    [div] = [a for a in r.audit() if a["kind"] == "divergence"]
    assert div["inputs"]["confirmed"] and div["inputs"]["price_source"] == "broker_entry_price"
    assert D(div["inputs"]["avg_price"]) == D("100.1")
    assert "fills" not in r.coord["counts"]  # never booked as a fill of ours


def test_a_forged_fill_for_our_account_changes_nothing(rig) -> None:
    r = rig()
    r.quote()
    r.tell("gateway", fill(coid="forged-1", qty="40"))
    r.advance(1.0)
    assert r.position() == 0 == r.exchange_position()
    assert r.coord["counts"]["unknown_order_fills"] == 1
    assert r.coord["unconfirmed_divergences"] == 0


def test_an_unsolicited_snapshot_is_never_applied(rig) -> None:
    """A pushed (or forged) snapshot without BTC used to zero BTC."""
    r = rig()
    r.quote()
    r.signal("buy", "2")
    r.advance(0.5)
    r.tell("gateway", PositionSnapshot("default", ((ETH, D("0")),), r.clock.now()))
    r.tell("gateway", PositionSnapshot("default", (), r.clock.now(), request_id="rec-999999"))
    r.advance(0.5)
    assert r.position() == 2
    assert r.rt.info("reconciler")["trust"][IGNORED] == {UNSOLICITED: 2}
    assert len(untrusted(r, UNSOLICITED)) == 2
    assert r.coord["counts"].get("divergences", 0) == 0


def test_a_partial_answer_to_our_own_question_is_confirmed_before_believed(rig) -> None:
    r = rig()
    r.quote()
    r.signal("buy", "2")
    r.advance(0.5)
    # a one-off partial answer (BTC missing, so "0"): suspected, not applied
    r.tell("coordinator", BrokerPositions("default", (), r.clock.now(),
                                          requested_at=r.clock.now()))
    r.settle()
    assert r.position() == 2 and r.coord["unconfirmed_divergences"] == 1
    # fail closed meanwhile: the book is in doubt
    r.signal("buy", "1")
    r.settle()
    assert r.reasons()[-1] == "positions_unavailable"
    r.advance(0.5)  # the confirming answer (BTC 2) clears it
    assert r.position() == 2 and r.coord["unconfirmed_divergences"] == 0
    assert r.coord["counts"]["divergences_not_confirmed"] == 1


def test_a_broker_that_changes_its_answer_every_time_is_not_asked_forever(rig) -> None:
    """Each confirming answer shows another quantity (a forger racing the
    confirmation): three questions in a row, then the book waits for the
    poll, still failing closed, never moving."""
    r = rig()
    r.quote()
    r.signal("buy", "2")
    r.advance(0.5)
    for qty in ("7", "8", "9", "10", "11"):
        r.tell("coordinator", BrokerPositions("default", ((BTC, D(qty)),), r.clock.now(),
                                              requested_at=r.clock.now(), source="confirm"))
        r.settle()
    assert r.rt.info("reconciler")["confirms"] <= 3
    assert r.position() == 2 and r.coord["counts"].get("divergences", 0) == 0


def test_a_30000_symbol_divergence_writes_bounded_logs_and_audit(rig) -> None:
    n = 30_000
    r = rig(config={"bounds": {"max_snapshot_entries": 50_000}})
    r.quote()
    entries = [{"symbol": f"X{i:05d}USDT", "qty": "1", "avg_price": "2"} for i in range(n)]
    r.tell("venue", ExchangeFault({"set_position": entries}))
    audit_before = len(r.audit())
    lines: list[str] = []
    from loguru import logger

    sink = logger.add(lambda m: lines.append(str(m)), level="INFO")
    try:
        r.advance(12.5)  # the poll, then the confirming query
    finally:
        logger.remove(sink)
    assert r.coord["counts"]["divergences"] == n
    assert len(r.coord["positions"]) == n + 0  # every symbol taken over (BTC never traded)
    records = r.audit()[audit_before:]
    assert len([a for a in records if a["kind"] == "divergence"]) == 21  # 20 + 1 aggregate
    assert sum(1 for line in lines if "divergence" in line) <= 10
    assert (r.run_dir / "audit.jsonl").stat().st_size < 200_000


# -- item 3: a position taken over from the broker keeps its price --------------------


def test_closing_a_taken_over_position_books_the_real_pnl(rig) -> None:
    """The broker holds -10 @ 120 while the book is flat. Taken over at 0
    (the old behaviour), its unrealized loss was the whole notional (-1200)
    and the kill switch (max daily loss 1000) tripped."""
    r = rig()
    r.quote(bid="120.0", ask="120.1")
    r.tell("venue", ExchangeFault({"set_position": {"symbol": BTC, "qty": "-10",
                                                    "avg_price": "120.0"}}))
    r.advance(12.5)  # poll + confirmation
    assert r.position() == -10
    [div] = [a for a in r.audit() if a["kind"] == "divergence"]
    assert div["inputs"]["price_source"] == "broker_entry_price"
    r.signal("buy", "10", reduce_only=True)
    r.advance(0.5)
    assert r.position() == 0 == r.exchange_position()
    realized = D(r.coord["pnl"]["realized"])
    assert D("-5") < realized < 0, realized   # (120.0 - 120.1) x 10, minus the fee
    assert r.coord["trading_state"] == "ACTIVE"


def test_a_takeover_without_a_venue_price_uses_the_mark_and_says_so(rig) -> None:
    r = rig()
    r.quote(bid="120.0", ask="120.2")
    r.tell("venue", ExchangeFault({"set_position": {"symbol": BTC, "qty": "-10",
                                                    "avg_price": "120.0"}}))
    r.settle()
    for _ in range(2):  # two answers from a venue that gives no entry price
        r.tell("coordinator", BrokerPositions("default", ((BTC, D("-10")),), r.clock.now(),
                                              requested_at=r.clock.now()))
    r.settle()
    [div] = [a for a in r.audit() if a["kind"] == "divergence"]
    assert div["inputs"]["price_source"].startswith("mark_at_takeover")
    assert D(div["inputs"]["avg_price"]) == D("120.1")
    assert abs(D(r.coord["daily_pnl"])) < 1
    assert r.coord["trading_state"] == "ACTIVE"


def test_decimal_context_traps_what_would_be_silent() -> None:
    from messages.bounds import CONTEXT

    for op in (lambda: CONTEXT.multiply(D("1E+60"), D("1E+60")),     # overflow
               lambda: CONTEXT.multiply(D("1E-60"), D("1E-60")),     # underflow
               lambda: CONTEXT.create_decimal(0.1)):                  # a float mixed in
        with pytest.raises(decimal.DecimalException):
            op()
    assert Signal(BTC, Side.BUY, ABSURD, NOW).qty == ABSURD  # decodes: bounds are the gate's job
