"""The control endpoint's routes: one HTTP request handler on stdlib ``http.server``.

``GET /metrics``, ``/actors?peek=N``, ``/healthz``, ``/readyz`` read published
figures and mailbox counters; ``POST /kill-switch`` tells the coordinator a
``KillSwitch`` and returns at once. A request first passes the checks of
``app.control_access`` (Host, browser origin, token, content type); a route
that raises answers 500 and never stops the endpoint. Request logging goes
to loguru at DEBUG with the path only, never headers (the token travels in
one). The server (:class:`ControlServer <app.control.ControlServer>`) owns
the socket, the thread and the tokens; a handler reaches it through
``self.server.control``.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from loguru import logger

from app.control_access import JSON_TYPE, from_browser, is_json, redact_data
from app.control_probes import health, liveness
from app.metrics import system_of
from runtime.redact import redact_text

if TYPE_CHECKING:
    from app.control import ControlServer

MAX_PEEK = 100
GET_ROUTES = ("/metrics", "/actors?peek=N", "/healthz", "/readyz")


class ControlRequestHandler(BaseHTTPRequestHandler):
    """One request: the access checks, then the route (see module doc)."""

    server_version = "tradewarden-control"
    sys_version = ""
    #: a client that stops talking cannot hold a handler thread (and shutdown) for long
    timeout = 5.0
    server: ControlHTTPServer

    @property
    def control(self) -> ControlServer:
        return self.server.control

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Path only: never headers (the token travels in one).
        logger.debug("control {} {}", self.address_string(), redact_text(format % args))

    def _refused(self, *, mutating: bool) -> bool:
        """Answer and return True when the request may not go on (``app.control_access``)."""
        host = self.headers.get("Host")
        if not self.control.host_allowed(host):
            self._send(421, {"error": "Host does not name this endpoint"})
            logger.warning("control: refused a request for Host {!r}", redact_text(str(host))[:80])
            return True
        browser = from_browser(self.headers, mutating=mutating)
        if browser is not None:
            self._send(403, {"error": "requests from web pages are refused"})
            logger.warning("control: refused a {} from a browser ({})", self.command,
                           ", ".join(browser))
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        if self._refused(mutating=False):
            return
        if not self.control.authorized(self.headers.get("Authorization")):
            self._send(401, {"error": "unauthorized"},
                       extra={"WWW-Authenticate": 'Bearer realm="tradewarden"'})
            return
        route = {"/metrics": self._metrics, "/actors": self._actors, "/healthz": self._healthz,
                 "/readyz": self._readyz, "/": self._index}.get(url.path.rstrip("/") or "/")
        if route is None:
            self._send(404, {"error": "not found", "routes": list(GET_ROUTES)})
            return
        try:
            route(parse_qs(url.query))
        except Exception as exc:  # noqa: BLE001 - one bad request never stops the endpoint
            logger.exception("control {} failed", url.path)
            self._send(500, {"error": redact_text(f"{type(exc).__name__}: {exc}")})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        """``POST /kill-switch {"on": bool, "reason": str}``: the operator's switch.

        The only write route. It tells the coordinator a ``KillSwitch`` (the
        same message a scenario's ``control`` entry sends) and returns 202:
        the coordinator decides, audits and alerts; the request never waits
        on an actor. A restart keeps an engaged switch (the store holds it),
        so this is also how a halted or resumed run is released.
        """
        url = urlsplit(self.path)
        if self._refused(mutating=True):
            return
        if not self.control.authorized_to_write(self.headers.get("Authorization")):
            self._send(401, {"error": "unauthorized: mutating routes need the run's token"},
                       extra={"WWW-Authenticate": 'Bearer realm="tradewarden"'})
            return
        if not is_json(self.headers.get("Content-Type")):
            self._send(415, {"error": f"Content-Type must be {JSON_TYPE}"})
            return
        if url.path.rstrip("/") != "/kill-switch":
            self._send(404, {"error": "not found", "routes": ["POST /kill-switch"]})
            return
        try:
            length = min(int(self.headers.get("Content-Length") or 0), 4096)
            body = json.loads(self.rfile.read(length) or b"{}")
            on, reason = body.get("on"), body.get("reason")
            if not isinstance(on, bool) or not isinstance(reason, str) or not reason.strip():
                raise ValueError('expected {"on": true|false, "reason": "<why>"}')
        except (ValueError, AttributeError) as exc:
            self._send(400, {"error": redact_text(str(exc))})
            return
        from messages.control import KillSwitch

        system = system_of(self.control.target)
        reason = redact_text(reason.strip())[:200]
        system.tell("coordinator", KillSwitch(on, f"operator: {reason}", system.clock.now()))
        logger.warning("kill switch {} requested through the control endpoint: {}",
                       "ON" if on else "OFF", reason)
        self._send(202, {"accepted": True, "on": on, "reason": reason})

    def _index(self, _q: dict[str, list[str]]) -> None:
        self._send(200, {"routes": list(GET_ROUTES)})

    def _metrics(self, _q: dict[str, list[str]]) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = redact_text(generate_latest(self.control.registry).decode("utf-8"))
        self._raw(200, body.encode("utf-8"), CONTENT_TYPE_LATEST)

    def _actors(self, q: dict[str, list[str]]) -> None:
        try:
            peek = int((q.get("peek") or ["0"])[0])
        except ValueError:
            self._send(400, {"error": "peek must be an integer"})
            return
        system = system_of(self.control.target)
        if system is None:
            self._send(503, {"error": "runtime not started"})
            return
        self._send(200, redact_data(system.snapshot(peek=max(0, min(peek, MAX_PEEK)))))

    def _healthz(self, _q: dict[str, list[str]]) -> None:
        ok, body = liveness(self.control.target)
        self._send(200 if ok else 503, body)

    def _readyz(self, _q: dict[str, list[str]]) -> None:
        ok, body = health(self.control.target)
        self._send(200 if ok else 503, body)

    def _send(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body, default=str, indent=1).encode("utf-8")
        self._raw(status, data, "application/json", extra)

    def _raw(self, status: int, data: bytes, ctype: str,
             extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class ControlHTTPServer(ThreadingHTTPServer):
    # Handler threads are joined on close (rule 16); the handler timeout bounds the wait.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    #: set by ControlServer.bind, read by the handlers
    control: ControlServer
