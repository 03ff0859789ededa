"""The Binance USDⓈ-M face, driven by the unmodified ccxt library over loopback.

Every round trip is checked against the engine's own record (events.jsonl):
what ccxt was told must be what the exchange did. Refusals are checked as
ccxt maps them (its exception classes) and, where the exact wire shape
matters, on the raw HTTP answer too. Nothing here leaves 127.0.0.1; ccxt's
rate limiter is off (enableRateLimit False) and its options keep it on the
endpoints the face serves.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest

from exchange.binance_face import CCXT_OPTIONS, ApiKey, apply_urls, ccxt_urls
from exchange.binance_face.auth import keys_from_env, sign
from exchange.binance_face.ids import ALGO_BASE, numeric_id
from exchange.binance_face.server import BinanceFaceServer
from exchange.binance_face.weights import Limits
from messages import Quote, utc_now

pytestmark = pytest.mark.timeout(60)

SYM, USYM = "BTCUSDT", "BTC/USDT:USDT"
KEY_A = ApiKey("key-a", "secret-a", "acct-a")
KEY_B = ApiKey("key-b", "secret-b", "acct-b")
WAIT_S = 5.0


def quote(bid: str, ask: str, symbol: str = SYM, size: str = "0") -> Quote:
    return Quote(symbol, Decimal(bid), Decimal(ask), utc_now(), bid_size=Decimal(size),
                 ask_size=Decimal(size))


@pytest.fixture
def face(tmp_path: Path) -> Iterator[BinanceFaceServer]:
    srv = BinanceFaceServer(config={"quote_currency": "USDT", "symbols": [SYM, "ETHUSDT"]},
                            out_dir=tmp_path, keys=[KEY_A, KEY_B])
    srv.start()
    srv.push(quote("100", "100.1"))
    yield srv
    srv.stop()


def events(srv: BinanceFaceServer, kind: str | None = None,
           coid: str | None = None) -> list[dict[str, Any]]:
    assert srv.out_dir is not None
    rows = [json.loads(line) for line in (srv.out_dir / "events.jsonl").read_text().splitlines()]
    return [r for r in rows if (kind is None or r["kind"] == kind)
            and (coid is None or r.get("client_order_id") == coid)]


def _config(key: ApiKey, **extra: Any) -> dict[str, Any]:
    return {"apiKey": key.key, "secret": key.secret, "enableRateLimit": False,
            "options": dict(CCXT_OPTIONS), **extra}


@asynccontextmanager
async def rest_client(srv: BinanceFaceServer, key: ApiKey = KEY_A,
                      **extra: Any) -> AsyncIterator[Any]:
    ex = ccxt_async.binanceusdm(_config(key, **extra))
    apply_urls(ex, "127.0.0.1", srv.port)
    try:
        await ex.load_markets()
        yield ex
    finally:
        await ex.close()


@asynccontextmanager
async def pro_client(srv: BinanceFaceServer, key: ApiKey = KEY_A) -> AsyncIterator[Any]:
    ex = ccxt_pro.binanceusdm(_config(key))
    apply_urls(ex, "127.0.0.1", srv.port)
    try:
        await ex.load_markets()
        yield ex
    finally:
        await ex.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def wait(aw: Any) -> Any:
    return await asyncio.wait_for(aw, WAIT_S)


# -- signing --------------------------------------------------------------------------


def test_signature_is_binance_hmac_sha256_of_the_documented_example() -> None:
    # Binance's API documentation example (SIGNED endpoint security, HMAC).
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    query = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
             "&recvWindow=5000&timestamp=1499827319559")
    assert sign(query, secret) == \
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_keys_from_env_parse_and_refuse_bad_entries() -> None:
    assert keys_from_env("k1:s1:a1,k2:s2:a2") == (ApiKey("k1", "s1", "a1"),
                                                   ApiKey("k2", "s2", "a2"))
    with pytest.raises(ValueError, match="entry 2"):
        keys_from_env("k1:s1:a1,broken")
    assert "s1" not in repr(ApiKey("k1", "s1", "a1"))


def test_url_overrides_name_every_fapi_family_and_the_linear_stream() -> None:
    urls = ccxt_urls("127.0.0.1", 4321)
    assert urls["fapiPrivate"] == "http://127.0.0.1:4321/fapi/v1"
    assert urls["fapiPrivateV2"] == "http://127.0.0.1:4321/fapi/v2"
    assert urls["ws"]["linear"] == "ws://127.0.0.1:4321/ws"
    ex = ccxt_async.binanceusdm({})
    try:
        apply_urls(ex, "127.0.0.1", 4321)
        assert ex.urls["api"]["fapiPublic"] == "http://127.0.0.1:4321/fapi/v1"
        assert "binance.com" not in json.dumps({k: v for k, v in ex.urls["api"].items()
                                                if k.startswith("fapi")})
    finally:
        run(ex.close())


# -- markets ----------------------------------------------------------------------------


def test_load_markets_reads_the_published_filters(face: BinanceFaceServer) -> None:
    async def go() -> dict[str, Any]:
        async with rest_client(face) as ex:
            assert await ex.fetch_time() == pytest.approx(time.time() * 1000, abs=5000)
            return ex.markets

    markets = run(go())
    assert set(markets) == {USYM, "ETH/USDT:USDT"}
    m = markets[USYM]
    assert (m["id"], m["linear"], m["swap"], m["settle"]) == (SYM, True, True, "USDT")
    assert m["precision"]["price"] == 0.01 and m["precision"]["amount"] == 0.001
    assert m["limits"]["amount"]["min"] == 0.001 and m["limits"]["cost"]["min"] == 5


def test_orders_breaking_the_filters_are_refused_and_never_reach_the_book(
        face: BinanceFaceServer) -> None:
    async def go() -> list[type]:
        raised = []
        async with rest_client(face) as ex:
            for params in ({"quantity": "0.0015", "price": "99"},   # step 0.001
                           {"quantity": "1", "price": "99.005"},    # tick 0.01
                           {"quantity": "0.01", "price": "99"},     # notional 0.99 < 5
                           {"quantity": "1", "price": "500"}):      # PERCENT_PRICE
                try:
                    await ex.fapiPrivatePostOrder({"symbol": SYM, "side": "BUY", "type": "LIMIT",
                                                   "timeInForce": "GTC", **params})
                except ccxt.BaseError as exc:
                    raised.append(type(exc))
        return raised

    raised = run(go())
    assert len(raised) == 4 and all(issubclass(c, ccxt.ExchangeError) for c in raised)
    assert events(face, "order_submitted") == []


# -- order round trips ----------------------------------------------------------------


def test_limit_order_create_query_cancel_round_trip(face: BinanceFaceServer) -> None:
    async def go() -> tuple[dict, dict, list, dict, dict]:
        async with rest_client(face) as ex:
            made = await ex.create_order(USYM, "limit", "buy", 2, 99.5,
                                         {"newClientOrderId": "tw-1-abc"})
            by_coid = await ex.fetch_order(None, USYM, {"origClientOrderId": "tw-1-abc"})
            open_ = await ex.fetch_open_orders(USYM)
            gone = await ex.cancel_order(made["id"], USYM)
            after = await ex.fetch_order(made["id"], USYM)
            return made, by_coid, open_, gone, after

    made, by_coid, open_, gone, after = run(go())
    acked = events(face, "order_acked", "tw-1-abc")
    assert len(acked) == 1
    assert made["id"] == str(numeric_id(acked[0]["exchange_order_id"]))
    assert made["clientOrderId"] == "tw-1-abc" and made["status"] == "open"
    assert (made["price"], made["amount"], made["side"]) == (99.5, 2.0, "buy")
    sub = events(face, "order_submitted", "tw-1-abc")[0]
    assert (sub["side"], sub["qty"], sub["price"], sub["order_type"], sub["account"]) == \
        ("buy", "2", "99.5", "limit", "acct-a")
    assert by_coid["id"] == made["id"] and by_coid["status"] == "open"
    assert [o["clientOrderId"] for o in open_] == ["tw-1-abc"]
    assert gone["status"] == "canceled" and after["status"] == "canceled"
    assert len(events(face, "order_canceled", "tw-1-abc")) == 1


def test_market_order_fills_and_positions_balance_trades_agree_with_the_engine(
        face: BinanceFaceServer) -> None:
    async def go() -> tuple[dict, list, dict, list]:
        async with rest_client(face) as ex:
            made = await ex.create_order(USYM, "market", "buy", 3, None,
                                         {"newClientOrderId": "mk-1"})
            positions = await ex.fetch_positions([USYM])
            balance = await ex.fetch_balance()
            trades = await ex.fetch_my_trades(USYM)
            return made, positions, balance, trades

    made, positions, balance, trades = run(go())
    fills = events(face, "order_filled", "mk-1")
    assert len(fills) == 1 and made["status"] == "closed" and made["filled"] == 3.0
    assert made["average"] == float(fills[0]["price"]) == 100.1
    pos = [p for p in positions if p["symbol"] == USYM]
    assert pos[0]["contracts"] == 3.0 and pos[0]["side"] == "long"
    assert pos[0]["entryPrice"] == 100.1
    fee = Decimal(fills[0]["fee"])
    mark = (Decimal("100") + Decimal("100.1")) / 2
    upnl = (mark - Decimal("100.1")) * 3
    # ccxt's total for a futures account is the margin balance: wallet + unrealized PnL
    assert Decimal(str(balance["USDT"]["total"])) == \
        face.engine.config.starting_cash - fee + upnl
    assert [t["id"] for t in trades] == [str(numeric_id(fills[0]["fill_id"]))]
    assert trades[0]["order"] == made["id"] and trades[0]["amount"] == 3.0


def test_my_trades_paging_by_from_id_skips_nothing_and_repeats_nothing(
        face: BinanceFaceServer) -> None:
    face.inject({"partial_fills": 5})

    async def go() -> list[str]:
        seen: list[str] = []
        async with rest_client(face) as ex:
            await ex.create_order(USYM, "market", "buy", 5, None, {"newClientOrderId": "pg-1"})
            since = 0
            while True:
                page = await ex.fapiPrivateGetUserTrades({"symbol": SYM, "fromId": since,
                                                          "limit": 2})
                if not page:
                    return seen
                seen += [str(row["id"]) for row in page]
                since = int(page[-1]["id"]) + 1

    seen = run(go())
    expected = [str(numeric_id(f["fill_id"])) for f in events(face, "order_filled", "pg-1")]
    assert len(expected) == 5 and seen == expected


def test_stop_market_and_stop_limit_go_through_the_algo_api_and_trigger(
        face: BinanceFaceServer) -> None:
    async def go() -> tuple[dict, list, dict]:
        async with rest_client(face) as ex:
            await ex.create_order(USYM, "market", "buy", 2, None, {"newClientOrderId": "pos-1"})
            sm = await ex.create_order(USYM, "market", "sell", 2, None,
                                       {"triggerPrice": 95, "reduceOnly": True,
                                        "clientOrderId": "sl-m"})
            sl = await ex.create_order(USYM, "limit", "sell", 1, 94, {"triggerPrice": 96,
                                                                       "clientOrderId": "sl-l"})
            algo_open = await ex.fetch_open_orders(USYM, params={"trigger": True})
            canceled = await ex.cancel_order(sl["id"], USYM, {"trigger": True})
            face.push(quote("94.9", "95"))  # the bid falls to the stop-market trigger
            return sm, algo_open, canceled

    sm, algo_open, canceled = run(go())
    assert sm["clientOrderId"] == "sl-m" and sm["status"] == "open"
    assert sorted(o["clientOrderId"] for o in algo_open) == ["sl-l", "sl-m"]
    assert canceled["status"] == "canceled"
    sub = events(face, "order_submitted", "sl-m")[0]
    assert (sub["order_type"], sub["trigger_price"], sub["reduce_only"]) == \
        ("stop_market", "95", True)
    assert events(face, "order_submitted", "sl-l")[0]["order_type"] == "stop_limit"
    fills = events(face, "order_filled", "sl-m")
    assert [(f["qty"], f["price"]) for f in fills] == [("2", "94.9")]
    assert face.engine.position(SYM, "acct-a") == 0


def test_unknown_orders_map_to_order_not_found(face: BinanceFaceServer) -> None:
    async def go() -> list[type]:
        raised = []
        async with rest_client(face) as ex:
            for call in (ex.cancel_order("4242", USYM),
                         ex.cancel_order(None, USYM, {"origClientOrderId": "nope"}),
                         ex.fetch_order(None, USYM, {"origClientOrderId": "nope"})):
                try:
                    await call
                except ccxt.BaseError as exc:
                    raised.append(type(exc))
        return raised

    assert run(go()) == [ccxt.OrderNotFound] * 3
    assert events(face, "cancel_rejected", "nope")[0]["outcome"] == "unknown"


def test_a_key_sees_and_cancels_only_its_own_accounts_orders(face: BinanceFaceServer) -> None:
    async def go() -> tuple[list, type | None]:
        async with rest_client(face, KEY_A) as a, rest_client(face, KEY_B) as b:
            await a.create_order(USYM, "limit", "buy", 1, 99, {"newClientOrderId": "own-a"})
            seen_by_b = await b.fetch_open_orders(USYM)
            try:
                await b.cancel_order(None, USYM, {"origClientOrderId": "own-a"})
                return seen_by_b, None
            except ccxt.BaseError as exc:
                return seen_by_b, type(exc)

    seen_by_b, raised = run(go())
    assert seen_by_b == [] and raised is ccxt.OrderNotFound
    assert events(face, "cancel_requested", "own-a") == []
    assert face.engine.order("own-a").is_working


def test_cancel_answer_waits_for_the_engines_delayed_confirmation(
        face: BinanceFaceServer) -> None:
    face.inject({"cancel_ack_delay_ms": 300})

    async def go() -> tuple[dict, float]:
        async with rest_client(face) as ex:
            made = await ex.create_order(USYM, "limit", "buy", 1, 99, {"newClientOrderId": "cd-1"})
            t0 = time.monotonic()
            gone = await ex.cancel_order(made["id"], USYM)
            return gone, time.monotonic() - t0

    gone, took = run(go())
    assert gone["status"] == "canceled" and took >= 0.3
    assert len(events(face, "order_canceled", "cd-1")) == 1


# -- refusals: signature, clock, rate limits ---------------------------------------------


async def _raw(srv: BinanceFaceServer, method: str, path: str, params: dict[str, Any],
               *, key: ApiKey = KEY_A, secret: str | None = None,
               timestamp: int | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A hand-signed request, so the wire answer itself can be checked."""
    full = {**params, "timestamp": timestamp if timestamp is not None
            else int(time.time() * 1000)}
    query = urlencode(full)
    query += "&signature=" + sign(query, secret if secret is not None else key.secret)
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{srv.base_url}{path}?{query}",
                                headers={"X-MBX-APIKEY": key.key}) as resp:
            return resp.status, await resp.json(), dict(resp.headers)


def test_bad_signature_gets_binance_error_shape_and_is_never_served(
        face: BinanceFaceServer) -> None:
    status, body, _ = run(_raw(face, "POST", "/fapi/v1/order",
                               {"symbol": SYM, "side": "BUY", "type": "MARKET", "quantity": "1",
                                "newClientOrderId": "forged"}, secret="not-the-secret"))
    assert status == 400 and body == {"code": -1022,
                                      "msg": "Signature for this request is not valid."}

    async def via_ccxt() -> None:
        async with rest_client(face, ApiKey(KEY_A.key, "wrong", "x")) as ex:
            await ex.create_order(USYM, "market", "buy", 1, None, {"newClientOrderId": "forged2"})

    with pytest.raises(ccxt.AuthenticationError):
        run(via_ccxt())
    assert events(face, "order_submitted") == []
    refused = events(face, "request_refused")
    assert [(r["path"], r["status"], r["code"]) for r in refused] == \
        [("/fapi/v1/order", 400, -1022)] * 2


def test_unknown_api_key_is_refused(face: BinanceFaceServer) -> None:
    status, body, _ = run(_raw(face, "GET", "/fapi/v2/balance", {},
                               key=ApiKey("nobody", "x", "y")))
    assert status == 401 and body["code"] == -2015


def test_recv_window_is_checked(face: BinanceFaceServer) -> None:
    now = int(time.time() * 1000)
    late = run(_raw(face, "GET", "/fapi/v2/balance", {"recvWindow": 5000}, timestamp=now - 6000))
    inside = run(_raw(face, "GET", "/fapi/v2/balance", {"recvWindow": 10000},
                      timestamp=now - 6000))
    ahead = run(_raw(face, "GET", "/fapi/v2/balance", {}, timestamp=now + 3000))
    assert (late[0], late[1]["code"]) == (400, -1021)
    assert inside[0] == 200
    assert (ahead[0], ahead[1]["code"]) == (400, -1021)


def test_clock_skew_is_invalid_nonce_until_ccxt_resyncs(face: BinanceFaceServer) -> None:
    face.venue_fault({"clock_offset_ms": 30_000})

    async def go() -> dict[str, Any]:
        async with rest_client(face) as ex:
            with pytest.raises(ccxt.InvalidNonce):
                await ex.fetch_balance()
            await ex.load_time_difference()  # ccxt's resync from /fapi/v1/time
            ex.options["adjustForTimeDifference"] = True
            return await ex.fetch_balance()

    assert run(go())["USDT"]["total"] > 0


def test_injected_timestamp_error_is_invalid_nonce(face: BinanceFaceServer) -> None:
    face.venue_fault({"timestamp_error": 1})

    async def go() -> None:
        async with rest_client(face) as ex:
            with pytest.raises(ccxt.InvalidNonce):
                await ex.create_order(USYM, "market", "buy", 1, None, {"newClientOrderId": "ts-1"})
            await ex.create_order(USYM, "market", "buy", 1, None, {"newClientOrderId": "ts-2"})

    run(go())
    assert events(face, "order_submitted", "ts-1") == []
    assert len(events(face, "order_acked", "ts-2")) == 1


@pytest.mark.parametrize("fault,status,retry", [
    ({"rate_limit": {"count": 1, "retry_after_s": 7}}, 429, "7"),
    ({"ban": {"count": 1, "retry_after_s": 120}}, 418, "120"),
])
def test_rate_limit_and_ban_have_binance_shape_and_map_to_ddos_protection(
        face: BinanceFaceServer, fault: dict[str, Any], status: int, retry: str) -> None:
    face.venue_fault(fault)
    code, body, headers = run(_raw(face, "GET", "/fapi/v2/balance", {}))
    assert code == status and body["code"] == -1003 and headers["Retry-After"] == retry

    async def go() -> None:
        async with rest_client(face) as ex:
            face.venue_fault(fault)
            with pytest.raises(ccxt.DDoSProtection) as info:
                await ex.create_order(USYM, "market", "buy", 1, None, {"newClientOrderId": "rl-1"})
            assert f" {status} " in str(info.value)  # what tells 429 from 418 apart in ccxt

    run(go())
    assert events(face, "order_submitted", "rl-1") == []


@pytest.mark.parametrize("mode,exc", [("drop", ccxt.NetworkError),
                                      ("hang", ccxt.RequestTimeout)])
def test_lost_create_answer_leaves_the_order_on_the_book(face: BinanceFaceServer, mode: str,
                                                         exc: type) -> None:
    face.venue_fault({"lose_create_answer": {"count": 1, "mode": mode, "hang_s": 1.5}})

    async def go() -> dict[str, Any]:
        async with rest_client(face, timeout=500) as ex:
            with pytest.raises(exc):
                await ex.create_order(USYM, "limit", "buy", 1, 99, {"newClientOrderId": "lost-1"})
            return await ex.fetch_order(None, USYM, {"origClientOrderId": "lost-1"})

    found = run(go())
    assert found["status"] == "open" and found["clientOrderId"] == "lost-1"
    assert len(events(face, "order_acked", "lost-1")) == 1
    assert len(events(face, "answer_lost", "lost-1")) == 1


def test_venue_fault_spec_is_validated(face: BinanceFaceServer) -> None:
    with pytest.raises(ValueError, match="unknown venue fault"):
        face.venue_fault({"rate_limitt": 1})
    with pytest.raises(ValueError, match="mode"):
        face.venue_fault({"lose_create_answer": {"count": 1, "mode": "maybe"}})


# -- streams --------------------------------------------------------------------------


def test_watch_bids_asks_streams_the_engines_quotes(face: BinanceFaceServer) -> None:
    async def go() -> tuple[dict, dict]:
        async with pro_client(face) as ex:
            first = (await wait(ex.watch_bids_asks([USYM])))[USYM]
            nxt = asyncio.ensure_future(ex.watch_bids_asks([USYM]))
            face.push(quote("101", "101.2"))
            return first, (await wait(nxt))[USYM]

    first, second = run(go())
    assert (first["bid"], first["ask"]) == (100.0, 100.1)
    assert (second["bid"], second["ask"]) == (101.0, 101.2)


def test_watch_orders_and_my_trades_follow_the_engine(face: BinanceFaceServer) -> None:
    face.inject({"partial_fills": 2})

    async def go() -> tuple[list, list, list]:
        async with pro_client(face) as ex:
            await wait(ex.fetch_balance())
            new = asyncio.ensure_future(ex.watch_orders(USYM))
            await wait(_user_stream_open(face, "acct-a"))
            await ex.create_order(USYM, "limit", "buy", 4, 99, {"clientOrderId": "ws-1"})
            acked = [dict(o) for o in await wait(new)]
            trades_f = asyncio.ensure_future(ex.watch_my_trades(USYM))
            face.push(quote("98.9", "99"))  # crosses the resting buy: two fill reports
            await wait(trades_f)
            # the second report may land before a second watch is made: read
            # ccxt's trade cache, which every report on the stream goes into
            await wait(_until(lambda: len(ex.myTrades or []) >= 2))
            return acked, list(ex.myTrades), list(ex.orders)

    acked, trades, cached = run(go())
    assert [(o["clientOrderId"], o["status"]) for o in acked] == [("ws-1", "open")]
    fills = events(face, "order_filled", "ws-1")
    assert [t["id"] for t in trades] == [str(numeric_id(f["fill_id"])) for f in fills]
    assert [t["amount"] for t in trades] == [float(f["qty"]) for f in fills] == [2.0, 2.0]
    final = [o for o in cached if o["clientOrderId"] == "ws-1"][-1]
    assert final["status"] == "closed" and final["filled"] == 4.0


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.01)


def _user_sessions(srv: BinanceFaceServer, account: str) -> set[Any]:
    return {sess for sess in list(srv.face.sessions) if sess.account == account}


async def _user_stream_open(srv: BinanceFaceServer, account: str,
                            old: set[Any] | None = None) -> None:
    """Until the face holds a user-data session of ``account`` other than
    ``old`` ones (ccxt opens it lazily, inside a watch): events before that
    are not its to see."""
    while not _user_sessions(srv, account) - (old or set()):
        await asyncio.sleep(0.01)


def test_partial_fill_then_cancel_is_streamed_with_the_filled_quantity(
        face: BinanceFaceServer) -> None:
    face.inject({"limit_by_quote_size": True})

    async def go() -> list[dict]:
        updates: list[dict] = []
        async with pro_client(face) as ex:
            await ex.create_order(USYM, "limit", "buy", 5, 99, {"clientOrderId": "pc-1"})
            watch = asyncio.ensure_future(ex.watch_orders(USYM))
            await wait(_user_stream_open(face, "acct-a"))
            face.push(quote("98.9", "99", size="2"))  # only 2 offered at 99
            updates += [dict(o) for o in await wait(watch)]  # (ccxt updates its cache in place)
            watch = asyncio.ensure_future(ex.watch_orders(USYM))
            await ex.cancel_order(None, USYM, {"origClientOrderId": "pc-1"})
            updates += [dict(o) for o in await wait(watch)]
        return updates

    updates = run(go())
    mine = [(u["status"], u["filled"]) for u in updates if u["clientOrderId"] == "pc-1"]
    assert mine[-1] == ("canceled", 2.0)
    assert ("open", 2.0) in mine
    canceled = events(face, "order_canceled", "pc-1")
    assert len(canceled) == 1 and canceled[0]["qty"] == "3"


async def _user_stream(srv: BinanceFaceServer, key: ApiKey) -> tuple[aiohttp.ClientSession,
                                                                     Any, str]:
    http = aiohttp.ClientSession()
    async with http.post(f"{srv.base_url}/fapi/v1/listenKey",
                         headers={"X-MBX-APIKEY": key.key}) as resp:
        lk = (await resp.json())["listenKey"]
    ws = await http.ws_connect(f"ws://127.0.0.1:{srv.port}/private/ws?listenKey={lk}")
    return http, ws, lk


def test_each_listen_key_sees_only_its_own_accounts_events(face: BinanceFaceServer) -> None:
    async def go() -> list[dict]:
        http_b, ws_b, _ = await _user_stream(face, KEY_B)
        try:
            async with rest_client(face, KEY_A) as a, rest_client(face, KEY_B) as b:
                await a.create_order(USYM, "market", "buy", 1, None, {"newClientOrderId": "iso-a"})
                await b.create_order(USYM, "limit", "buy", 1, 99, {"newClientOrderId": "iso-b"})
            # B's stream is FIFO: had A's events reached it, they would come first
            first = json.loads((await wait(ws_b.receive())).data)
            return [first]
        finally:
            await ws_b.close()
            await http_b.close()

    (first,) = run(go())
    assert first["e"] == "ORDER_TRADE_UPDATE" and first["o"]["c"] == "iso-b"


def test_a_duplicate_fill_report_repeats_the_same_trade_id(face: BinanceFaceServer) -> None:
    face.inject({"duplicate_fill": 1})

    async def go() -> list[dict]:
        http, ws, _ = await _user_stream(face, KEY_A)
        try:
            async with rest_client(face) as ex:
                await ex.create_order(USYM, "market", "buy", 1, None, {"newClientOrderId": "dup-1"})
            out: list[dict] = []
            while sum(1 for m in out if m.get("o", {}).get("x") == "TRADE") < 2:
                out.append(json.loads((await wait(ws.receive())).data))
            return out
        finally:
            await ws.close()
            await http.close()

    trades = [m["o"] for m in run(go()) if m.get("o", {}).get("x") == "TRADE"]
    assert len(trades) == 2 and trades[0] == trades[1]
    assert trades[0]["t"] == numeric_id(events(face, "fill_duplicated", "dup-1")[0]["fill_id"])


def test_listen_key_keepalive_expiry_and_stream_drop(face: BinanceFaceServer) -> None:
    async def go() -> tuple[dict, dict, int, Any]:
        http, ws, lk = await _user_stream(face, KEY_A)
        try:
            async with http.put(f"{face.base_url}/fapi/v1/listenKey",
                                headers={"X-MBX-APIKEY": KEY_A.key}) as resp:
                kept = await resp.json()
            face.venue_fault({"expire_listen_keys": True})
            expired = json.loads((await wait(ws.receive())).data)
            async with http.put(f"{face.base_url}/fapi/v1/listenKey",
                                headers={"X-MBX-APIKEY": KEY_A.key}) as resp:
                status = resp.status
                unknown = await resp.json()
            closed = await wait(ws.receive())
            # a fresh key's stream is dropped by the engine's drop_stream fault
            _, ws2, _ = await _user_stream(face, KEY_A)
            face.inject({"drop_stream": True})
            dropped = await wait(ws2.receive())
            await ws2.close()
            return kept, expired, status, (unknown, closed.type, dropped.type)
        finally:
            await ws.close()
            await http.close()

    kept, expired, status, (unknown, closed, dropped) = run(go())
    assert kept["listenKey"]
    assert expired["e"] == "listenKeyExpired" and expired["listenKey"] == kept["listenKey"]
    assert status == 400 and unknown["code"] == -1125
    assert closed in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert dropped in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                       aiohttp.WSMsgType.ERROR)


def test_stall_holds_the_user_stream_until_resumed(face: BinanceFaceServer) -> None:
    async def go() -> tuple[bool, dict]:
        http, ws, _ = await _user_stream(face, KEY_A)
        try:
            face.inject({"stall_stream": True})
            async with rest_client(face) as ex:
                await ex.create_order(USYM, "limit", "buy", 1, 99, {"newClientOrderId": "st-1"})
            try:
                await asyncio.wait_for(ws.receive(), 0.3)
                held = False
            except TimeoutError:
                held = True
            face.inject({"resume_stream": True})
            return held, json.loads((await wait(ws.receive())).data)
        finally:
            await ws.close()
            await http.close()

    held, first = run(go())
    assert held and first["o"]["c"] == "st-1" and first["o"]["X"] == "NEW"


def test_control_endpoint_takes_engine_and_venue_faults(face: BinanceFaceServer) -> None:
    async def go() -> tuple[int, int, int]:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{face.base_url}/_sim/fault",
                                 json={"venue": {"rate_limit": 1},
                                       "engine": {"reject_next": 1}}) as r1:
                ok = r1.status
            async with http.post(f"{face.base_url}/_sim/fault", json={"engine": {"bogus": 1}}) as r2:
                bad = r2.status
            async with http.post(f"{face.base_url}/_sim/quote",
                                 json={"symbol": SYM, "bid": "90", "ask": "90.5"}) as r3:
                q = r3.status
        return ok, bad, q

    assert run(go()) == (200, 400, 200)
    assert face.face.faults.rate_limit.count == 1 and face.engine.armed.reject_next == 1
    assert face.engine.book(SYM).bid == Decimal("90")


def test_control_endpoint_pages_the_events_record(face: BinanceFaceServer) -> None:
    face.inject({"set_position": {"symbol": SYM, "qty": "2", "account": "acct-a"}})

    async def go() -> tuple[dict, dict]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{face.base_url}/_sim/events", params={"limit": "0"}) as r:
                mark = await r.json()
            async with rest_client(face) as ex:
                await ex.create_order(USYM, "limit", "buy", 1, 99, {"newClientOrderId": "ev-1"})
            async with http.get(f"{face.base_url}/_sim/events",
                                params={"cursor": str(mark["cursor"])}) as r:
                return mark, await r.json()

    mark, page = run(go())
    assert mark["positions"] == [["acct-a", SYM, "2"]] and mark["lines"] == []
    kinds = [json.loads(line)["kind"] for line in page["lines"]]
    assert "order_submitted" in kinds and "order_acked" in kinds
    assert all(json.loads(line)["seq"] > mark["last_seq"] for line in page["lines"])


@pytest.mark.parametrize("params,code", [
    ({"type": "LIMIT", "quantity": "abc", "price": "99"}, -1102),
    ({"type": "LIMIT", "quantity": "1e99999", "price": "99"}, -1102),
    ({"type": "LIMIT", "quantity": "1", "price": "NaN"}, -1102),
    ({"type": "LIMIT", "quantity": "-1", "price": "99"}, -4004),
    ({"type": "LIMIT", "quantity": "1"}, -1102),
    ({"type": "HOLD", "quantity": "1"}, -1116),
    ({"type": "LIMIT", "quantity": "1", "price": "99", "side": "UP"}, -1117),
    ({"type": "LIMIT", "quantity": "1", "price": "99", "symbol": "NOPEUSDT"}, -1121),
    ({"type": "LIMIT", "quantity": "1", "price": "99", "newClientOrderId": "no spaces"}, -4015),
    ({"type": "LIMIT", "quantity": "1", "price": "99", "positionSide": "LONG"}, -4061),
    ({"type": "STOP_MARKET", "quantity": "1", "stopPrice": "90"}, -4120),
])
def test_malformed_or_misrouted_orders_get_binance_codes_and_never_reach_the_engine(
        face: BinanceFaceServer, params: dict[str, str], code: int) -> None:
    full = {"symbol": SYM, "side": "BUY", "timeInForce": "GTC", **params}
    status, body, _ = run(_raw(face, "POST", "/fapi/v1/order", full))
    assert (status, body["code"]) == (400, code), body
    assert events(face, "order_submitted") == []
    assert run(_raw(face, "GET", "/fapi/v1/openOrders", {}))[0] == 200  # still serving


def test_request_weight_and_order_count_limits_are_enforced_like_binance(
        tmp_path: Path) -> None:
    srv = BinanceFaceServer(config={"quote_currency": "USDT", "symbols": [SYM]},
                            out_dir=tmp_path, keys=[KEY_A],
                            limits=Limits(weight_per_min=10, orders_per_10s=2))
    srv.start()
    try:
        srv.push(quote("100", "100.1"))
        first, second, third = (run(_raw(srv, "GET", "/fapi/v2/balance", {})) for _ in range(3))
        assert [first[2]["X-MBX-USED-WEIGHT-1M"], second[2]["X-MBX-USED-WEIGHT-1M"]] == ["5", "10"]
        assert (third[0], third[1]["code"]) == (429, -1003)
        assert 1 <= int(third[2]["Retry-After"]) <= 60
        srv.face.weights.limits.weight_per_min = None  # orders weigh 0, but ccxt loads markets
        answers = [run(_raw(srv, "POST", "/fapi/v1/order",
                            {"symbol": SYM, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                             "quantity": "1", "price": "99", "newClientOrderId": f"oc-{i}"}))
                   for i in range(3)]
        assert [a[0] for a in answers] == [200, 200, 429]
        assert answers[1][2]["X-MBX-ORDER-COUNT-10S"] == "2"
        assert answers[2][1]["code"] == -1015 and int(answers[2][2]["Retry-After"]) <= 10
        assert events(srv, "order_submitted", "oc-2") == []
    finally:
        srv.stop()


def test_engine_faults_reach_ccxt_latency_reject_and_restart(face: BinanceFaceServer) -> None:
    async def go() -> tuple[float, type, type]:
        async with rest_client(face) as ex:
            face.inject({"latency_ms": 200})
            t0 = time.monotonic()
            await ex.create_order(USYM, "limit", "buy", 1, 99, {"newClientOrderId": "lat-1"})
            took = time.monotonic() - t0
            face.inject({"latency_ms": 0, "reject_next": 1})
            try:
                await ex.create_order(USYM, "limit", "buy", 1, 99, {"newClientOrderId": "rej-1"})
                rejected: type = type(None)
            except ccxt.BaseError as exc:
                rejected = type(exc)
            face.inject({"restart": {"wipe": True}})
            try:
                await ex.fetch_order(None, USYM, {"origClientOrderId": "lat-1"})
                wiped: type = type(None)
            except ccxt.BaseError as exc:
                wiped = type(exc)
            return took, rejected, wiped

    took, rejected, wiped = run(go())
    assert took >= 0.2
    assert issubclass(rejected, ccxt.ExchangeError)
    assert events(face, "order_rejected", "rej-1")[0]["reason"].startswith("injected_reject")
    assert wiped is ccxt.OrderNotFound  # the restarted exchange lost its orders


def test_my_trades_since_a_time_and_ccxt_pro_reconnects_after_a_drop(
        face: BinanceFaceServer) -> None:
    async def go() -> tuple[list, type, list]:
        async with pro_client(face) as ex:
            since = ex.milliseconds()
            await ex.create_order(USYM, "market", "buy", 1, None, {"clientOrderId": "tm-1"})
            trades = await ex.fetch_my_trades(USYM, since)
            watch = asyncio.ensure_future(ex.watch_orders(USYM))
            await wait(_user_stream_open(face, "acct-a"))
            old = _user_sessions(face, "acct-a")
            face.inject({"drop_stream": True})
            try:
                await wait(watch)
                dropped: type = type(None)
            except ccxt.NetworkError as exc:
                dropped = type(exc)
            again = asyncio.ensure_future(ex.watch_orders(USYM))  # ccxt reconnects
            await wait(_user_stream_open(face, "acct-a", old))
            await ex.create_order(USYM, "limit", "buy", 1, 99, {"clientOrderId": "tm-2"})
            return trades, dropped, [dict(o) for o in await wait(again)]

    trades, dropped, after = run(go())
    fills = events(face, "order_filled", "tm-1")
    assert [t["id"] for t in trades] == [str(numeric_id(fills[0]["fill_id"]))]
    assert issubclass(dropped, ccxt.NetworkError)
    assert [o["clientOrderId"] for o in after] == ["tm-2"]


def test_classic_stream_paths_raw_listen_key_and_combined_streams(face: BinanceFaceServer) -> None:
    async def go() -> tuple[dict, dict, dict]:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{face.base_url}/fapi/v1/listenKey",
                                 headers={"X-MBX-APIKEY": KEY_A.key}) as resp:
                lk = (await resp.json())["listenKey"]
            user = await http.ws_connect(f"ws://127.0.0.1:{face.port}/ws/{lk}")
            market = await http.ws_connect(
                f"ws://127.0.0.1:{face.port}/stream?streams=btcusdt@bookTicker")
            first_quote = json.loads((await wait(market.receive())).data)
            await market.send_str(json.dumps({"method": "SUBSCRIBE", "id": 6,
                                              "params": ["btcusdt@bookTicker"]}))
            assert json.loads((await wait(market.receive())).data) == {"result": None, "id": 6}
            await market.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 7}))
            listed = json.loads((await wait(market.receive())).data)
            async with rest_client(face) as ex:
                await ex.create_order(USYM, "limit", "buy", 1, 99, {"newClientOrderId": "cl-1"})
            update = json.loads((await wait(user.receive())).data)
            await user.close()
            await market.close()
            return first_quote, listed, update

    first_quote, listed, update = run(go())
    assert first_quote["stream"] == "btcusdt@bookTicker"
    assert (first_quote["data"]["b"], first_quote["data"]["a"]) == ("100", "100.1")
    assert listed == {"result": ["btcusdt@bookTicker"], "id": 7}
    subs = events(face, "subscribed")
    assert [(e["symbols"], e["duplicates"]) for e in subs] == [(["btcusdt@bookTicker"], []),
                                                               ([], ["btcusdt@bookTicker"])]
    assert subs[0]["session"] == subs[1]["session"] and face.engine.stats[
        "duplicate_subscriptions"] == 1
    assert update["o"]["c"] == "cl-1" and update["o"]["x"] == "NEW"


def test_a_new_face_on_the_same_engine_carries_on(tmp_path: Path) -> None:
    """The face process restarts (the engine, as a venue's books, survives):
    ccxt keeps its URLs, finds its order, and the ids it holds still resolve."""
    srv = BinanceFaceServer(config={"quote_currency": "USDT", "symbols": [SYM]},
                            out_dir=tmp_path, keys=[KEY_A])
    srv.start()
    srv.push(quote("100", "100.1"))
    port = srv.port

    async def before() -> str:
        async with rest_client(srv) as ex:
            made = await ex.create_order(USYM, "limit", "buy", 1, 99,
                                         {"newClientOrderId": "rs-1"})
            return str(made["id"])

    order_id = run(before())
    srv.stop()
    again = BinanceFaceServer(srv.engine, port=port, out_dir=tmp_path, keys=[KEY_A])
    again.start()
    try:
        async def after() -> tuple[dict, dict]:
            async with rest_client(again) as ex:
                found = await ex.fetch_order(order_id, USYM)
                gone = await ex.cancel_order(order_id, USYM)
                return found, gone

        found, gone = run(after())
        assert again.port == port
        assert found["clientOrderId"] == "rs-1" and found["status"] == "open"
        assert gone["status"] == "canceled"
    finally:
        again.stop()


def test_account_update_after_a_fill_carries_the_futures_wallet_and_position(
        face: BinanceFaceServer) -> None:
    async def go() -> dict:
        http, ws, _ = await _user_stream(face, KEY_A)
        try:
            async with rest_client(face) as ex:
                await ex.create_order(USYM, "market", "buy", 2, None, {"newClientOrderId": "au-1"})
            while True:
                msg = json.loads((await wait(ws.receive())).data)
                if msg["e"] == "ACCOUNT_UPDATE":
                    return msg
        finally:
            await ws.close()
            await http.close()

    update = run(go())
    fill = events(face, "order_filled", "au-1")[0]
    (balance,) = update["a"]["B"]
    (position,) = update["a"]["P"]
    assert balance["a"] == "USDT"
    # a futures wallet: starting cash less fees (the notional is margin, not spent)
    assert Decimal(balance["wb"]) == face.engine.config.starting_cash - Decimal(fill["fee"])
    assert (position["s"], position["pa"], position["ep"]) == (SYM, "2", fill["price"])


def test_ticker_all_orders_and_cancel_all_through_ccxt(face: BinanceFaceServer) -> None:
    async def go() -> tuple[dict, dict, list, list]:
        async with pro_client(face) as ex:
            first = await wait(ex.watch_ticker(USYM))
            nxt = asyncio.ensure_future(ex.watch_ticker(USYM))
            face.push(quote("102", "102.2"))
            ticked = await wait(nxt)
            await ex.create_order(USYM, "market", "buy", 1, None, {"clientOrderId": "ao-1"})
            for i in (2, 3):
                await ex.create_order(USYM, "limit", "buy", 1, 99, {"clientOrderId": f"ao-{i}"})
            await ex.cancel_all_orders(USYM)
            orders = await ex.fetch_orders(USYM)
            return first, ticked, orders, await ex.fetch_open_orders(USYM)

    first, ticked, orders, still_open = run(go())
    assert first["last"] == 100.05 and ticked["last"] == 102.1
    assert [(o["clientOrderId"], o["status"]) for o in orders] == \
        [("ao-1", "closed"), ("ao-2", "canceled"), ("ao-3", "canceled")]
    assert still_open == []
    assert {e["client_order_id"] for e in events(face, "order_canceled")} == {"ao-2", "ao-3"}


def test_an_ioc_limit_that_cannot_trade_expires_on_rest_and_stream(face: BinanceFaceServer) -> None:
    async def go() -> tuple[dict, dict]:
        http, ws, _ = await _user_stream(face, KEY_A)
        try:
            async with rest_client(face) as ex:
                made = await ex.create_order(USYM, "limit", "buy", 1, 99,
                                             {"newClientOrderId": "ioc-1", "timeInForce": "IOC"})
            updates = [json.loads((await wait(ws.receive())).data) for _ in range(2)]
            return made, updates[-1]
        finally:
            await ws.close()
            await http.close()

    made, last = run(go())
    assert made["status"] == "expired" and made["timeInForce"] == "IOC"
    assert (last["o"]["c"], last["o"]["x"], last["o"]["X"]) == ("ioc-1", "EXPIRED", "EXPIRED")
    assert len(events(face, "order_expired", "ioc-1")) == 1


def test_exchange_command_with_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = subprocess.run([sys.executable, str(repo / "main.py"), "exchange", "--protocol",
                            "binanceusdm", "--port", str(busy.getsockname()[1]),
                            "--out", str(tmp_path)], capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)})
    assert r.returncode == 2
    assert "cannot listen" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_cumulative_fill_figures_stay_exact_across_a_face_restart(tmp_path: Path) -> None:
    srv = BinanceFaceServer(config={"quote_currency": "USDT", "symbols": [SYM],
                                    "limit_by_quote_size": True},
                            out_dir=tmp_path, keys=[KEY_A])
    srv.start()
    srv.push(quote("100", "100.1"))

    async def place() -> None:
        async with rest_client(srv) as ex:
            await ex.create_order(USYM, "limit", "buy", 5, 99, {"newClientOrderId": "rx-1"})

    run(place())
    srv.push(quote("98.9", "99", size="2"))  # 2 of 5 filled
    port = srv.port
    srv.stop()
    again = BinanceFaceServer(srv.engine, port=port, out_dir=tmp_path, keys=[KEY_A])
    again.start()
    try:
        async def rest_of_it() -> dict:
            http, ws, _ = await _user_stream(again, KEY_A)
            try:
                again.push(quote("98.8", "98.9", size="10"))
                while True:
                    msg = json.loads((await wait(ws.receive())).data)
                    if msg["e"] == "ORDER_TRADE_UPDATE":
                        return msg["o"]
            finally:
                await ws.close()
                await http.close()

        o = run(rest_of_it())
    finally:
        again.stop()
    assert (o["c"], o["x"], o["X"], o["l"], o["z"]) == ("rx-1", "TRADE", "FILLED", "3", "5")
    assert o["ap"] == "99"


def test_a_conditional_order_lives_in_the_algo_service_until_it_triggers(
        face: BinanceFaceServer) -> None:
    """As on Binance since its Algo Service: before the trigger the order is
    known by its algoId only (the plain order endpoints do not know it); the
    trigger places an order in the matching engine (a new orderId, the same
    client id), announced by ALGO_UPDATE TRIGGERED before that order's own
    NEW and fills."""
    async def go() -> tuple[dict, type, list, list, list[dict], dict, dict]:
        http, ws, _ = await _user_stream(face, KEY_A)
        try:
            async with rest_client(face) as ex:
                await ex.create_order(USYM, "market", "buy", 2, None, {"newClientOrderId": "ap-0"})
                made = await ex.create_order(USYM, "market", "sell", 2, None,
                                             {"triggerPrice": 95, "reduceOnly": True,
                                              "clientOrderId": "ap-1"})
                try:
                    await ex.fetch_order(None, USYM, {"origClientOrderId": "ap-1"})
                    plain: type = type(None)
                except ccxt.BaseError as exc:
                    plain = type(exc)
                regular = await ex.fetch_open_orders(USYM)
                algos = await ex.fetch_open_orders(USYM, params={"trigger": True})
                msgs: list[dict] = []
                face.push(quote("94.9", "95"))
                while not any(m.get("o", {}).get("X") == "FILLED" and m["o"]["c"] == "ap-1"
                              for m in msgs):
                    msgs.append(json.loads((await wait(ws.receive())).data))
                algo_after = await ex.fapiPrivateGetAlgoOrder({"clientAlgoId": "ap-1"})
                order_after = await ex.fapiPrivateGetOrder({"symbol": SYM,
                                                            "origClientOrderId": "ap-1"})
                return made, plain, regular, algos, msgs, algo_after, order_after
        finally:
            await ws.close()
            await http.close()

    made, plain, regular, algos, msgs, algo_after, order_after = run(go())
    assert int(made["id"]) > ALGO_BASE and made["clientOrderId"] == "ap-1"
    assert plain is ccxt.OrderNotFound
    assert [o["clientOrderId"] for o in regular] == []
    assert [o["clientOrderId"] for o in algos] == ["ap-1"]
    mine = [(m["e"], m["o"].get("X"), m["o"].get("x")) for m in msgs
            if m["e"] in ("ALGO_UPDATE", "ORDER_TRADE_UPDATE")
            and (m["o"].get("caid") == "ap-1" or m["o"].get("c") == "ap-1")]
    assert mine == [("ALGO_UPDATE", "NEW", None), ("ALGO_UPDATE", "TRIGGERED", None),
                    ("ORDER_TRADE_UPDATE", "NEW", "NEW"),
                    ("ORDER_TRADE_UPDATE", "FILLED", "TRADE")]
    triggered = next(m["o"] for m in msgs if m["e"] == "ALGO_UPDATE" and m["o"]["X"] == "TRIGGERED")
    trade = next(m["o"] for m in msgs if m["e"] == "ORDER_TRADE_UPDATE"
                 and m["o"]["x"] == "TRADE" and m["o"]["c"] == "ap-1")
    actual = numeric_id(events(face, "order_acked", "ap-1")[0]["exchange_order_id"])
    assert int(triggered["ai"]) == trade["i"] == actual != int(made["id"])
    assert (trade["o"], trade["ot"]) == ("MARKET", "STOP_MARKET")
    assert algo_after["algoStatus"] == "FINISHED" and algo_after["actualOrderId"] == str(actual)
    assert (order_after["orderId"], order_after["status"]) == (actual, "FILLED")
