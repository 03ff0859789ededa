"""Alert sinks: where the alerts actor sends each :class:`~messages.alerts.Alert`.

A sink is a small, synchronous object: ``ready_reason()`` says why it cannot
deliver yet (``None`` when it can) and ``send(alert)`` delivers one alert or
raises :class:`SinkError`. All queueing, ordering, retry and backoff live in
the alerts actor, so a sink stays trivial to write and to test.

Secrets: a sink never keeps a secret in an attribute. The Telegram bot token
is read from the environment variable *named* in config at the moment of
sending, used to build the request and scrubbed (raw and URL-quoted) from
any error text before that text leaves the sink. ``SinkError`` is raised
outside the ``except`` block that caught the transport error, so it carries
no ``__context__`` (whose message or ``url`` attribute could hold the token).
Webhook URLs are treated the same way, because many (Slack, Discord) carry a
secret in their path.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any
from collections.abc import Iterable

from loguru import logger

from actors.alerts import Sink, SinkError, scrub
from messages.alerts import Alert
from runtime.redact import redact_text

DEFAULT_TIMEOUT_S = 3.0
_MAX_ERROR_BODY = 300
#: Statuses that mean "this request is wrong", so retrying it cannot help.
PERMANENT_STATUSES = frozenset({400, 413, 414, 422})
_LOG_LEVELS = {"info": "INFO", "warning": "WARNING", "critical": "CRITICAL"}


def _origin(url: str) -> str:
    """scheme://host[:port] of ``url``; the path (which may hold a secret) is hidden."""
    parts = urllib.parse.urlsplit(url)
    hidden = "/***" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}{hidden}"


def _check_http_url(url: Any, what: str) -> str:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https") \
            or not urllib.parse.urlsplit(url).hostname:
        shown = _origin(url) if isinstance(url, str) else repr(type(url).__name__)
        raise ValueError(f"{what} must be an http(s) URL with a host, got {shown}")
    return url


def post_json(url: str, payload: dict[str, Any], timeout_s: float) -> tuple[int, bytes]:
    """POST ``payload`` as JSON; return (status, first bytes of the body).

    HTTP error statuses are returned, not raised; transport errors (refused,
    timeout, DNS) raise. Proxies from the environment are honoured, as users
    behind a corporate proxy expect.
    """
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "tradewarden-alerts/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return response.status, response.read(_MAX_ERROR_BODY)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, exc.read(_MAX_ERROR_BODY)
        finally:
            exc.close()


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The JSON document a webhook receives (keys are a stable contract)."""
    return {
        "type": "tradewarden.alert",
        "severity": alert.severity,
        "title": redact_text(alert.title),
        "text": redact_text(alert.text),
        "ts": alert.ts.isoformat(),
        "source": alert.source,
        "dedup_key": alert.dedup_key,
    }


class LogSink(Sink):
    """Writes the alert to the run log through loguru. Ready at once."""

    kind = "log"

    def send(self, alert: Alert) -> None:
        logger.bind(alert_source=alert.source, alert_severity=alert.severity).log(
            _LOG_LEVELS[alert.severity], "ALERT [{}] {}: {} (source {}, at {})",
            alert.severity, redact_text(alert.title), redact_text(alert.text), alert.source,
            alert.ts.isoformat())


class _HttpSink(Sink):
    def __init__(self, name: str | None, timeout_s: float, wait_for_ready: bool) -> None:
        super().__init__(name, wait_for_ready=wait_for_ready)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
                or not 0 < timeout_s <= 30:
            raise ValueError(f"{self.name}: timeout_s must be in (0, 30] seconds, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)

    def send(self, alert: Alert) -> None:
        error = self._send(alert)
        if error is not None:
            raise error  # raised from a frame that holds no secret

    def _send(self, alert: Alert) -> SinkError | None:  # pragma: no cover - interface
        raise NotImplementedError

    def _attempt(self, url: str, payload: dict[str, Any], secrets: list[str | None],
                 ok: Any = None) -> SinkError | None:
        """One POST; returns the (scrubbed) error or None. Never raises."""
        try:
            status, body = post_json(url, payload, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any transport failure is a retryable error
            text = f"{type(exc).__name__}: {exc}"
            return SinkError(scrub(f"{self.name}: {text}", secrets))
        if 200 <= status < 300 and (ok is None or ok(body)):
            return None
        detail = body.decode("utf-8", "replace").strip()
        return SinkError(scrub(f"{self.name}: HTTP {status}: {detail}", secrets)[:400],
                         permanent=status in PERMANENT_STATUSES)


class WebhookSink(_HttpSink):
    """HTTP POST of the alert as JSON (:func:`alert_payload`).

    Give ``url``, or ``url_env`` (the name of an environment variable read at
    each send) when the URL itself is a secret, as Slack and Discord URLs are.
    """

    kind = "webhook"

    def __init__(self, url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, *,
                 url_env: str | None = None, name: str | None = None,
                 wait_for_ready: bool = False) -> None:
        super().__init__(name, timeout_s, wait_for_ready)
        if (url is None) == (url_env is None):
            raise ValueError(f"{self.name}: give url or url_env, not both and not neither")
        if url_env is not None and (not isinstance(url_env, str) or not url_env.strip()):
            raise ValueError(f"{self.name}: url_env must name an environment variable, got {url_env!r}")
        self._url = None if url is None else _check_http_url(url, f"{self.name}: url")
        self.url_env = url_env

    def ready_reason(self) -> str | None:
        return self._env_problem() or super().ready_reason()

    def _env_problem(self) -> str | None:
        if self.url_env is None:
            return None
        url = os.environ.get(self.url_env)
        if not url:
            return f"environment variable {self.url_env} not set"
        try:
            _check_http_url(url, f"environment variable {self.url_env}")
        except ValueError as exc:
            return str(exc)
        return None

    def _send(self, alert: Alert) -> SinkError | None:
        problem = self._env_problem()
        if problem is not None:
            return SinkError(f"{self.name}: {problem}")
        url = self._url or os.environ[self.url_env or ""]
        parts = urllib.parse.urlsplit(url)
        secrets = [url, parts.path if parts.path.strip("/") else None, parts.query or None,
                   parts.password]
        return self._attempt(url, alert_payload(alert), secrets)

    def __repr__(self) -> str:
        where = f"url={_origin(self._url)!r}" if self._url else f"url_env={self.url_env!r}"
        return f"WebhookSink(name={self.name!r}, {where}, timeout_s={self.timeout_s})"


class TelegramSink(_HttpSink):
    """Telegram Bot API ``sendMessage``. Token and chat id come from the
    environment variables *named* here, read at each send, never stored."""

    kind = "telegram"
    MAX_TEXT = 4096

    def __init__(self, bot_token_env: str, chat_id_env: str,
                 api_base: str = "https://api.telegram.org", *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 name: str | None = None, wait_for_ready: bool = False) -> None:
        super().__init__(name, timeout_s, wait_for_ready)
        for label, var in (("bot_token_env", bot_token_env), ("chat_id_env", chat_id_env)):
            if not isinstance(var, str) or not var.strip():
                raise ValueError(f"{self.name}: {label} must name an environment variable, got {var!r}")
        self.bot_token_env = bot_token_env
        self.chat_id_env = chat_id_env
        self.api_base = _check_http_url(api_base, f"{self.name}: api_base").rstrip("/")

    def ready_reason(self) -> str | None:
        missing = [v for v in (self.bot_token_env, self.chat_id_env) if not os.environ.get(v)]
        if missing:
            return f"environment variable {' and '.join(missing)} not set"
        return super().ready_reason()

    @classmethod
    def format_text(cls, alert: Alert) -> str:
        text = (f"[{alert.severity.upper()}] {redact_text(alert.title)}\n{redact_text(alert.text)}\n"
                f"-- {alert.source} at {alert.ts.isoformat()}")
        return text if len(text) <= cls.MAX_TEXT else text[: cls.MAX_TEXT - 3] + "..."

    def _send(self, alert: Alert) -> SinkError | None:
        token = os.environ.get(self.bot_token_env)
        chat_id = os.environ.get(self.chat_id_env)
        if not token or not chat_id:
            return SinkError(f"{self.name}: {self.ready_reason()}")
        url = f"{self.api_base}/bot{token}/sendMessage"
        payload = {"chat_id": chat_id, "text": self.format_text(alert),
                   "disable_web_page_preview": True}
        return self._attempt(url, payload, [token, chat_id], ok=_telegram_ok)

    def __repr__(self) -> str:
        return (f"TelegramSink(name={self.name!r}, bot_token_env={self.bot_token_env!r}, "
                f"chat_id_env={self.chat_id_env!r}, api_base={self.api_base!r})")


def _telegram_ok(body: bytes) -> bool:
    try:
        return json.loads(body.decode("utf-8") or "{}").get("ok", True) is not False
    except (ValueError, AttributeError):
        return True  # a 2xx whose body we cannot read: Telegram accepted it


_KINDS = {"log": LogSink, "webhook": WebhookSink, "telegram": TelegramSink}


def sinks_from_config(entries: Iterable[dict[str, Any]]) -> list[Sink]:
    """Build sinks from config entries such as ``{"kind": "webhook", "url": ...}``.

    A bad entry raises ValueError naming its index, the key and the problem.
    """
    sinks: list[Sink] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"alerts.sinks[{i}]: expected a mapping, got {type(entry).__name__}")
        options = dict(entry)
        kind = options.pop("kind", None)
        cls = _KINDS.get(kind)
        if cls is None:
            raise ValueError(f"alerts.sinks[{i}].kind: {kind!r} is not one of {', '.join(_KINDS)}")
        try:
            sinks.append(cls(**options))
        except TypeError as exc:
            raise ValueError(f"alerts.sinks[{i}] ({kind}): {exc}") from None
        except ValueError as exc:
            raise ValueError(f"alerts.sinks[{i}] ({kind}): {exc}") from None
    return sinks
