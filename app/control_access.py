"""Who may use the control endpoint, and what it may show them.

The checks every request to ``app.control`` passes, kept apart from the
routes so the policy reads in one place:

* With a token (read from the environment variable named by
  ``control.token_env``), every route needs ``Authorization: Bearer <token>``,
  compared in constant time (:func:`bearer_is`). The token is never logged
  or echoed.
* Mutating routes (``POST /kill-switch``) always need a token: the configured
  one, else one generated for this run and saved as ``control.token`` in the
  run directory with 0600 permissions (:func:`write_token_file`), where the
  ``kill-switch`` command reads it (:func:`read_token_file`).
* A web page cannot make a browser do what a script does (CSRF, DNS
  rebinding): the ``Host`` header must name the bound address, loopback
  aliases allowed for a loopback bind (:func:`host_allowed`); a request a
  browser marks as such (``Origin``, ``Sec-Fetch-*``) is refused on a
  mutating route, and a cross-site one on any route (:func:`from_browser`);
  a POST must be ``application/json`` (:func:`is_json`), so none of the
  "simple request" content types a form or ``fetch`` can send without a
  preflight (form-urlencoded, multipart, text/plain) is accepted.
* Everything served passes redaction (:func:`redact_data`): string values
  through :func:`runtime.redact.redact_text`, values of secret-looking keys
  replaced.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path
from typing import Any

from config.types import is_loopback
from runtime.redact import redact_text

#: the run directory's file holding a generated write token (0600)
TOKEN_FILE = "control.token"
#: the only body type a mutating route accepts (never a CORS "simple request" type)
JSON_TYPE = "application/json"
#: headers only browsers send: a request carrying one came from a web page
BROWSER_HEADERS = ("origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_SECRET_KEY = re.compile(r"(?i)(token|secret|password|passwd|api_?key|apikey|private_?key|signature)")


def bearer_is(header: str | None, token: bytes) -> bool:
    """``header`` is ``Bearer <token>`` (the token compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    ok = hmac.compare_digest(given.strip().encode("utf-8"), token)
    return scheme.lower() == "bearer" and ok


def host_allowed(bound_host: str, bound_port: int, header: str | None) -> bool:
    """``Host`` names the bound address (any loopback name for a loopback
    bind). A wildcard bind (0.0.0.0, ::) has no one name; a token guards it."""
    if bound_host in ("0.0.0.0", "::", ""):
        return True
    if not header:
        return False
    name, sep, port = header.strip().lower().rpartition(":")
    if not sep or port != str(bound_port):
        return False
    name = name.strip("[]")
    names = {bound_host.lower()}
    if is_loopback(bound_host):
        names.update(LOOPBACK_NAMES)
    return name in names


def from_browser(headers: Any, *, mutating: bool) -> list[str] | None:
    """The browser headers a refused request carried, or None when it may go
    on: a cross-site or same-site fetch is refused on any route, any browser
    header on a mutating one. ``headers`` is the request's header map."""
    site = (headers.get("Sec-Fetch-Site") or "").lower()
    browser = [h for h in BROWSER_HEADERS if headers.get(h) is not None]
    if site in ("cross-site", "same-site") or (mutating and browser):
        return browser
    return None


def is_json(content_type: str | None) -> bool:
    """The ``Content-Type`` header names ``application/json`` (parameters aside)."""
    return (content_type or "").split(";")[0].strip().lower() == JSON_TYPE


def write_token_file(run_dir: Any, token: bytes) -> Path:
    """Write ``token`` to ``run_dir/control.token`` with 0600 permissions."""
    path = Path(run_dir) / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file may have had wider permissions
        os.write(fd, token + b"\n")
    finally:
        os.close(fd)
    return path


def read_token_file(run_dir: Any) -> str | None:
    """The write token a run saved in its directory, or None."""
    try:
        return (Path(run_dir) / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


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
