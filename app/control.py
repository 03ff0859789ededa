"""The control endpoint: ``/metrics``, ``/actors``, ``/healthz``, ``/readyz`` over HTTP.

``/healthz`` is liveness (200 while the process supervises its actors, 503
once the root supervisor gave up); ``/readyz`` is readiness (503 while the
runtime is halted, the kill switch is engaged, the stream is down or
reconciling, recovery runs or the breaker is open), as Kubernetes expects
(``app.control_probes``). ``POST /kill-switch`` is the one write route.

DESIGN section 8: the runtime serves these on ``--control HOST:PORT``,
loopback by default. Why stdlib ``http.server``: a few routes need no
framework, and a ``ThreadingHTTPServer`` in one daemon thread keeps the
endpoint out of the actor system entirely: a scrape reads published
figures and mailbox counters, it never sends a message to an actor, so a
stuck actor cannot hang ``/actors`` (which is exactly when you need it).
The routes are ``app.control_handler``; who may call them (tokens, Host,
browser origin, content type, redaction) is ``app.control_access``.

This module is the server: its address, its tokens and its lifecycle.
Binding a non-loopback address without a token is refused here as well as
by the config validator, because ``--control`` on the command line bypasses
the config file. Mutating routes always need a token: the configured one,
else one generated for this run (:meth:`ControlServer.save_token`).

Lifecycle (rule 14 and 16): nothing happens at import or construction;
:meth:`ControlServer.bind` opens the socket (so a busy port fails before the
runtime starts), :meth:`ControlServer.start` serves from one thread and
:meth:`ControlServer.stop` shuts it down and joins every thread it started.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from loguru import logger

from app.control_access import bearer_is, host_allowed, write_token_file
from app.control_handler import ControlHTTPServer, ControlRequestHandler
from app.metrics import registry_for
from config.types import is_loopback


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
        self._server: ControlHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"ControlServer({self.url}, token={'set' if self._token else 'none'})"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def authorized(self, header: str | None) -> bool:
        return self._token is None or bearer_is(header, self._token)

    def authorized_to_write(self, header: str | None) -> bool:
        return bearer_is(header, self._write_token)

    def host_allowed(self, header: str | None) -> bool:
        """``Host`` names the bound address (:func:`app.control_access.host_allowed`)."""
        return host_allowed(self.host, self.port, header)

    def save_token(self, run_dir: Any) -> Any:
        """Write a generated write token to ``run_dir/control.token`` (0600) for
        the ``kill-switch`` command; a configured token stays in its variable.
        Returns the path, or None when nothing was written."""
        if not self.write_token_generated:
            return None
        return write_token_file(run_dir, self._write_token)

    # -- lifecycle ------------------------------------------------------------------

    def bind(self) -> ControlServer:
        """Open the socket (raises OSError if the address is busy); port 0 picks one."""
        if self._server is None:
            server = ControlHTTPServer((self.host, self.port), ControlRequestHandler)
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
