"""The REST door: what every request passes before and after its handler.

:meth:`Door.middleware` gives each answer Binance's error shape, applies the
venue faults that hit any request (418 ban, 429 rate limit) and the request
weights (their ``X-MBX-USED-WEIGHT-*`` headers, on refusals too), and records
a refused request in events.jsonl as ``request_refused`` (method, path, HTTP
status, Binance code, message). An unexpected exception is answered -1000
and logged, never fatal to the loop.

:meth:`Door.signed` is the one gate of signed endpoints: key, signature and
timestamp are checked (and the timestamp venue fault applied) before the
handler touches the engine, so a refused request never reaches it. Owns the
request count (the server's ``stats``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from urllib.parse import parse_qsl

from aiohttp import web
from loguru import logger

from exchange.binance_face import errors
from exchange.binance_face.auth import ApiKey, Authenticator
from exchange.binance_face.errors import BinanceError
from exchange.binance_face.venue_faults import VenueFaults
from exchange.binance_face.weights import Weights
from exchange.events_log import EventsLog
from exchange.virtual_wire import WireLedger, token_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: BinanceError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(exc.body(), status=exc.status, headers={**(headers or {}),
                                                                     **exc.headers})


def wire_token(request: web.Request) -> int | None:
    """The scenario harness's ledger token of a request (exchange.virtual_wire)."""
    return token_of(request.headers.get(WireLedger.HEADER))


class Door:
    def __init__(self, auth: Authenticator, faults: VenueFaults, weights: Weights,
                 log: EventsLog, now: Callable[[], datetime]) -> None:
        self.auth = auth
        self.faults = faults
        self.weights = weights
        self.log = log
        self.now = now
        self.requests = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        faults = self.faults
        headers: dict[str, str] = {}
        try:
            if request.path.startswith(("/fapi/", "/futures/")):
                if faults.take(faults.ban):
                    raise errors.banned(faults.server_ms() + faults.ban.retry_after_s * 1000,
                                        faults.ban.retry_after_s)
                if faults.take(faults.rate_limit):
                    raise errors.too_many_requests(faults.rate_limit.retry_after_s)
                headers = self.weights.charge(request.method, request.path,
                                              "symbol=" in request.rel_url.raw_query_string)
            response = await handler(request)
            response.headers.update(headers)
            return response
        except BinanceError as exc:
            self.log.append("request_refused", self.now(), method=request.method,
                            path=request.path, status=exc.status, code=exc.code,
                            reason=exc.msg)
            return error_response(exc, headers)
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - answered, logged, never fatal
            logger.opt(exception=exc).error("binance face: {} {} failed", request.method,
                                            request.path)
            return error_response(BinanceError(-1000, f"An unknown error occured while "
                                                      f"processing the request: "
                                                      f"{type(exc).__name__}", 500))

    async def signed(self, request: web.Request) -> tuple[ApiKey, dict[str, str]]:
        """The API key and the parameters (query, then body) of a signed request."""
        body = await request.text()
        query = request.rel_url.raw_query_string
        key = self.auth.verify(request.headers.get("X-MBX-APIKEY"), query, body,
                               self.faults.server_ms())
        if self.faults.take_timestamp_error():
            raise errors.outside_recv_window()
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        return key, params

    def api_key(self, request: web.Request) -> ApiKey:
        """The key of a USER_STREAM request (API key only, no signature)."""
        return self.auth.key_of(request.headers.get("X-MBX-APIKEY"))
