"""The ``alerts`` section: which sinks get every alert, and how hard they are tried.

Field names and bounds follow ``app/alert_sinks.py`` and
``actors/alerts.py`` so that :meth:`AlertsConfig.sink_entries` can be handed
to ``sinks_from_config`` unchanged. Secrets appear only as the names of
environment variables (``*_env``); the sinks read them at send time.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from config.types import (BackoffSection, EnvName, Jitter, NonNegFloat, PosFloat, PosInt,
                          Section)

#: the alert sinks refuse longer timeouts: a slow sink must not hold the alerts actor
SinkTimeout = Annotated[PosFloat, Field(le=30)]


class RetryConfig(BackoffSection):
    """Backoff for a failing sink (the alert stays queued; later ones wait behind it)."""

    base_s: PosFloat = 1.0
    max_s: PosFloat = 60.0
    jitter: Jitter = "equal"


def _http_url(v: str | None) -> str | None:
    if v is None:
        return v
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials: put the whole URL in an environment "
                         "variable and name it in url_env")
    return v


class WebhookSink(Section):
    """Generic HTTP POST of JSON. Give ``url``, or ``url_env`` when the URL itself is a
    secret (Slack and Discord webhook URLs are)."""

    url: str | None = None
    url_env: EnvName | None = None
    timeout_s: SinkTimeout = 3.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _http_url(v)

    @model_validator(mode="after")
    def _one(self) -> WebhookSink:
        if self.url and self.url_env:
            raise ValueError("url_env: give url or url_env, not both")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.url or self.url_env)


class TelegramSink(Section):
    """Bot token and chat id are read from the environment at send time, never stored."""

    bot_token_env: EnvName | None = None
    chat_id_env: EnvName | None = None
    api_base: str = "https://api.telegram.org"
    timeout_s: SinkTimeout = 3.0

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, v: str) -> str:
        return _http_url(v) or v

    @model_validator(mode="after")
    def _both(self) -> TelegramSink:
        if bool(self.bot_token_env) != bool(self.chat_id_env):
            missing = "chat_id_env" if self.bot_token_env else "bot_token_env"
            raise ValueError(f"{missing}: telegram needs both bot_token_env and chat_id_env")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token_env)


class AlertsConfig(Section):
    """The log sink is always on; webhook and telegram are on when configured."""

    #: alerts held per sink that is not up yet or failing (bounded: rule 13)
    max_pending: PosInt = 1000
    #: how often a sink that is not ready is checked again
    ready_poll_s: PosFloat = 5.0
    #: alerts with the same dedup key within this window are counted, not resent
    dedup_window_s: NonNegFloat = 300.0
    #: alerts sent per actor message when a backlog drains
    batch: PosInt = 20
    retry: RetryConfig = RetryConfig()
    webhook: WebhookSink = WebhookSink()
    telegram: TelegramSink = TelegramSink()

    def sink_entries(self) -> list[dict[str, Any]]:
        """Entries for ``app.alert_sinks.sinks_from_config``: log always, then the others."""
        out: list[dict[str, Any]] = [{"kind": "log"}]
        w = self.webhook
        if w.enabled:
            where = {"url": w.url} if w.url else {"url_env": w.url_env}
            out.append({"kind": "webhook", **where, "timeout_s": w.timeout_s})
        t = self.telegram
        if t.enabled:
            out.append({"kind": "telegram", "bot_token_env": t.bot_token_env,
                        "chat_id_env": t.chat_id_env, "api_base": t.api_base,
                        "timeout_s": t.timeout_s})
        return out
