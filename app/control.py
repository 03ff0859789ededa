"""The control endpoint: ``/metrics``, ``/actors``, ``/healthz``, ``/readyz`` over HTTP.

``/healthz`` is liveness (200 while the process supervises its actors, 503
once the root supervisor gave up); ``/readyz`` is readiness (503 while the
runtime is halted, the kill switch is engaged, the stream is down or
reconciling, recovery runs or the breaker is open), as Kubernetes expects.

DESIGN section 8: the runtime serves these on ``--control HOST:PORT``,
loopback by default. Why stdlib ``http.server``: three read-only GET routes
need no framework, and a ``ThreadingHTTPServer`` in one daemon thread keeps
the endpoint out of the actor system entirely: a scrape reads published
figures and mailbox counters, it never sends a message to an actor, so a
stuck actor cannot hang ``/actors`` (which is exactly when you need it).

Security:

* Binding a non-loopback address without a token is refused here as well
  as by the config validator, because ``--control`` on the command line
  bypasses the config file.
* With a token (read from the environment variable named by
  ``control.token_env``), every route needs ``Authorization: Bearer <token>``,
  compared in constant time. The token is never logged or echoed; request
  logging goes to loguru at DEBUG with the path only, never headers.
* Mutating routes (``POST /kill-switch``) always need a token: the configured
  one, else one generated for this run and saved as ``control.token`` in the
  run directory with 0600 permissions (``save_token``), where the
  ``kill-switch`` command reads it (``--run DIR``). A web page cannot make a
  browser do what a script does (CSRF, DNS rebinding): the ``Host`` header
  must name the bound address (loopback aliases allowed for a loopback bind);
  a request a browser marks as such (``Origin``, ``Sec-Fetch-*``) is refused
  on a mutating route, and a cross-site one on any route; a POST must be
  ``application/json``, so none of the "simple request" content types a form
  or ``fetch`` can send without a preflight (form-urlencoded, multipart,
  text/plain) is accepted.
* Everything served passes redaction: string values through
  :func:`runtime.redact.redact_text`, values of secret-looking keys replaced.

Lifecycle (rule 14 and 16): nothing happens at import or construction;
:meth:`ControlServer.bind` opens the socket (so a busy port fails before the
runtime starts), :meth:`ControlServer.start` serves from one thread and
:meth:`ControlServer.stop` shuts it down and joins every thread it started.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loguru import logger

from config.types import is_loopback
from runtime.introspection import info_of
from app.metrics import number, registry_for, system_of
from runtime.redact import redact_text

MAX_PEEK = 100
#: the run directory's file holding a generated write token (0600)
TOKEN_FILE = "control.token"
#: the only body type a mutating route accepts (never a CORS "simple request" type)
JSON_TYPE = "application/json"
#: headers only browsers send: a request carrying one came from a web page
BROWSER_HEADERS = ("origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
GET_ROUTES = ("/metrics", "/actors?peek=N", "/healthz", "/readyz")
_SECRET_KEY = re.compile(r"(?i)(token|secret|password|passwd|api_?key|apikey|private_?key|signature)")


class ControlError(RuntimeError):
    """The control endpoint cannot be set up as asked (address, token)."""


def parse_hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``[::1]:PORT`` -> (host, port)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    try:
        value = int(port)
    except ValueError:
        raise ControlError(f"not HOST:PORT: {text!r}") from None
    if not 0 <= value <= 65535:
        raise ControlError(f"port out of range: {value}")
    return host, value


def redact_data(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with secrets removed (keys and free text)."""
    if isinstance(value, dict):
        return {str(k): ("***" if _SECRET_KEY.search(str(k)) and v not in (None, "", {}, [])
                         else redact_data(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value))


def liveness(target: Any) -> tuple[bool, dict[str, Any]]:
    """``/healthz`` (Kubernetes liveness): is the process still supervising its actors?

    Only a runtime whose root supervisor gave up (halted) is dead: restarting
    the process is then the cure. A halted kill switch, a lost stream or a
    reconciliation is not (see :func:`health`, ``/readyz``): restarting for
    those would only add a recovery to the trouble."""
    system = system_of(target)
    if system is None:
        return True, {"live": True, "state": "starting"}
    if system.halted:
        return False, {"live": False, "state": "halted",
                       "reason": redact_text(str(system.halt_reason))}
    return True, {"live": True, "state": "supervising"}


def health(target: Any) -> tuple[bool, dict[str, Any]]:
    """``/readyz`` (readiness): whether the runtime can trade now, and why not
    (halted, kill switch, recovering, breaker open, stream down or reconciling)."""
    system = system_of(target)
    if system is None:
        return False, {"ok": False, "reasons": ["runtime not started"]}
    c = info_of(system, "coordinator")
    gw = info_of(system, "gateway")
    rec = info_of(system, "reconciler")
    reasons = []
    state = c.get("trading_state")
    if system.halted:
        reasons.append(f"runtime halted: {system.halt_reason}")
    if state != "ACTIVE":
        reasons.append(f"trading state {state}" + (f" ({c['kill_reason']})"
                                                   if c.get("kill_reason") else ""))
    if c.get("recovering"):
        reasons.append("recovering")
    if c.get("breaker") == "open":
        reasons.append("circuit breaker open")
    if not gw.get("connected"):
        reasons.append("exchange stream disconnected")
    elif gw.get("stream_reconciling"):
        reasons.append("exchange stream reconciling")
    last = rec.get("last_reconciled")
    age = None
    if last:
        try:
            age = round((system.clock.now() - datetime.fromisoformat(last)).total_seconds(), 3)
        except (TypeError, ValueError):
            age = None
    body = {
        "ok": not reasons,
        "reasons": reasons,
        "trading_state": state,
        "kill_reason": c.get("kill_reason"),
        "breaker": c.get("breaker"),
        "halted": system.halted,
        "connectivity": {"connected": bool(gw.get("connected")),
                         "stream_reconciling": bool(gw.get("stream_reconciling")),
                         "last_msg_age_s": number(gw.get("last_msg_age_s"))},
        "reconciliation": {"last_reconciled": last, "age_s": age, "polls": rec.get("polls", 0),
                           "recovered": rec.get("recovered")},
        "clock": system.clock.now().isoformat(),
    }
    return not reasons, redact_data(body)


class _Handler(BaseHTTPRequestHandler):
    server_version = "tradewarden-control"
    sys_version = ""
    #: a client that stops talking cannot hold a handler thread (and shutdown) for long
    timeout = 5.0
    server: _Server

    @property
    def control(self) -> ControlServer:
        return self.server.control

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Path only: never headers (the token travels in one).
        logger.debug("control {} {}", self.address_string(), redact_text(format % args))

    def _refused(self, *, mutating: bool) -> bool:
        """Answer and return True when the request may not go on (see module docstring)."""
        host = self.headers.get("Host")
        if not self.control.host_allowed(host):
            self._send(421, {"error": "Host does not name this endpoint"})
            logger.warning("control: refused a request for Host {!r}", redact_text(str(host))[:80])
            return True
        site = (self.headers.get("Sec-Fetch-Site") or "").lower()
        browser = [h for h in BROWSER_HEADERS if self.headers.get(h) is not None]
        if site in ("cross-site", "same-site") or (mutating and browser):
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
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != JSON_TYPE:
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


def _bearer_is(header: str | None, token: bytes) -> bool:
    scheme, _, given = (header or "").partition(" ")
    ok = hmac.compare_digest(given.strip().encode("utf-8"), token)
    return scheme.lower() == "bearer" and ok


def read_token_file(run_dir: Any) -> str | None:
    """The write token a run saved in its directory, or None."""
    from pathlib import Path

    try:
        return (Path(run_dir) / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class _Server(ThreadingHTTPServer):
    # Handler threads are joined on close (rule 16); the handler timeout bounds the wait.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    #: set by ControlServer.bind, read by the handlers
    control: ControlServer


class ControlServer:
    """``/metrics``, ``/actors``, ``/healthz`` for one runtime.

    ``target`` is a :class:`~app.launcher.Runtime`, a ``VirtualHarness``
    or an ``ActorSystem``; its system is looked up on every request, so the
    server can be bound before the runtime starts.
    """

    def __init__(self, target: Any, host: str = "127.0.0.1", port: int = 0, *,
                 token: str | None = None) -> None:
        if not is_loopback(host) and not token:
            raise ControlError(f"refusing to serve the control endpoint on {host} (not loopback) "
                               "without a token: set control.token_env and that variable")
        self.target = target
        self.host = host
        self.port = port
        self._token = token.encode("utf-8") if token else None
        #: mutating routes: the configured token, else one made for this run
        self.write_token_generated = token is None
        self._write_token = (token or secrets.token_urlsafe(32)).encode("utf-8")
        self.registry = registry_for(target)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"ControlServer({self.url}, token={'set' if self._token else 'none'})"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def authorized(self, header: str | None) -> bool:
        return self._token is None or _bearer_is(header, self._token)

    def authorized_to_write(self, header: str | None) -> bool:
        return _bearer_is(header, self._write_token)

    def host_allowed(self, header: str | None) -> bool:
        """``Host`` names the bound address (any loopback name for a loopback
        bind). A wildcard bind (0.0.0.0, ::) has no one name; a token guards it."""
        if self.host in ("0.0.0.0", "::", ""):
            return True
        if not header:
            return False
        name, sep, port = header.strip().lower().rpartition(":")
        if not sep or port != str(self.port):
            return False
        name = name.strip("[]")
        names = {self.host.lower()}
        if is_loopback(self.host):
            names.update(LOOPBACK_NAMES)
        return name in names

    def save_token(self, run_dir: Any) -> Any:
        """Write a generated write token to ``run_dir/control.token`` (0600) for
        the ``kill-switch`` command; a configured token stays in its variable.
        Returns the path, or None when nothing was written."""
        if not self.write_token_generated:
            return None
        from pathlib import Path

        path = Path(run_dir) / TOKEN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an older file may have had wider permissions
            os.write(fd, self._write_token + b"\n")
        finally:
            os.close(fd)
        return path

    # -- lifecycle ------------------------------------------------------------------

    def bind(self) -> ControlServer:
        """Open the socket (raises OSError if the address is busy); port 0 picks one."""
        if self._server is None:
            server = _Server((self.host, self.port), _Handler)
            server.control = self
            self._server = server
            self.port = server.server_address[1]
        return self

    def start(self) -> ControlServer:
        self.bind()
        if self._thread is None:
            assert self._server is not None  # bind() set it
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.1},
                                            name="tw-control", daemon=True)
            self._thread.start()
            logger.info("control endpoint on {} ({})", self.url,
                        "token required" if self._token else "no token")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        if thread is not None:
            server.shutdown()
            thread.join(timeout)
        server.server_close()  # joins the request threads

    def advertise(self, run_dir: Any) -> None:
        """Tell the run directory where this endpoint is (``run.json``:
        ``control_url``) and, when generated, its write token (``control.token``):
        what ``main.py kill-switch --run DIR`` reads."""
        from app.resume import read_run_info, save_run_info

        self.save_token(run_dir)
        info = read_run_info(run_dir)
        info["control_url"] = self.url
        save_run_info(run_dir, info)

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def from_config(target: Any, control_cfg: Any, address: str | None = None,
                environ: Any = None) -> ControlServer | None:
    """The server ``run`` asks for: ``address`` (``HOST:PORT`` or ``off``) over the config."""
    from config.secrets import read_secret

    if address is not None and address.strip().lower() == "off":
        return None
    if address is None and not control_cfg.enabled:
        return None
    host, port = (parse_hostport(address, control_cfg.host) if address is not None
                  else (control_cfg.host, control_cfg.port))
    token = None
    if control_cfg.token_env:
        token = read_secret(control_cfg.token_env, "control.token_env", environ)
    return ControlServer(target, host, port, token=token)
