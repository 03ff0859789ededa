"""The alerts actor: every Alert to every sink, in order, exactly once each.

Any actor (the coordinator's kill switch, a supervisor's halt hook, the
reconnect controller) only ever ``tell``s an :class:`~messages.alerts.Alert`
to ``alerts``; nothing waits for delivery. Per sink the actor keeps a FIFO
of pending alerts and delivers it when the sink is ready:

* **Not ready yet** (rule 5): a sink built with ``wait_for_ready=True`` waits
  for ``SinkReady(name)``; a Telegram sink waits for its environment
  variables. Alerts raised meanwhile are kept in order and delivered once it
  is ready. Readiness is re-checked on every Alert and SinkReady and, while
  something is waiting, by a ``ready_poll_s`` timer (no busy loop, no sleep).
* **Failing**: the alert stays at the head of the queue and the sink is
  retried after an exponential backoff (``runtime.backoff.Backoff``) on the
  system timer; later alerts queue behind it, so order holds and a success
  is never repeated. A *permanent* failure (HTTP 400/413/414/422: the
  request itself is wrong) drops that one alert, counted as ``rejected`` and
  logged with its title, instead of blocking the queue forever.
* **Bounded**: each queue holds at most ``max_pending`` alerts; past that
  the oldest is dropped, counted and logged with its severity and title, so
  the run log still has it (never silently, rule 17).
* **Dedup**: alerts with the same ``dedup_key`` within ``dedup_window_s``
  are counted and suppressed.

Where delivery runs, and why: in this actor's own thread, with a short
network timeout (3 s by default per request). The shared executor is the
system's bounded pool for CPU work (DESIGN section 2); parking its few
workers on a slow webhook for seconds would stall feature computation for
every symbol. The alerts actor is a long-lived actor with its own thread, so
a slow sink blocks only alert delivery, never the coordinator (whose
``tell`` returns at once) nor any other actor. A backlog is sent in batches
of ``batch`` alerts per message, so a SinkReady or a shutdown never waits
behind a long backlog. The cost: one slow sink delays the others by at most
its timeout per attempt; a sink that is down fails fast or times out once
per backoff step.

Figures (sent, failed, rejected, pending, dropped per sink) come from
:meth:`AlertsActor.figures` for introspection and metrics. Sink errors are
logged as scrubbed text only, never with a traceback (whose local variables
loguru would print, and a request URL may hold a token).
"""

from __future__ import annotations

import random
import urllib.parse
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Sequence

from messages.alerts import Alert, SinkReady
from runtime.actor import THREADED, Actor, handles
from runtime.backoff import Backoff
from runtime.context import ActorContext
from runtime.redact import redact_text

DEFAULT_BACKOFF = Backoff(base_s=1.0, max_s=60.0, jitter="equal")


class SinkError(Exception):
    """A delivery failed. ``permanent``: retrying the same alert cannot succeed."""

    def __init__(self, text: str, *, permanent: bool = False) -> None:
        super().__init__(text)
        self.permanent = permanent


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Remove every secret (raw and URL-quoted) from ``text``, then redact fields."""
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret)}:
            text = text.replace(form, "***")
    return redact_text(text)


class Sink:
    """Base class. ``wait_for_ready=True``: not ready until a ``SinkReady``."""

    kind = "sink"

    def __init__(self, name: str | None = None, *, wait_for_ready: bool = False) -> None:
        self.name = name or self.kind
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"sink name must be a non-empty string, got {name!r}")
        self.awaiting_signal = bool(wait_for_ready)

    def mark_ready(self) -> None:
        """Called by the alerts actor on ``SinkReady``. Kept on the sink object
        (which the child spec holds) so a restarted alerts actor still knows."""
        self.awaiting_signal = False

    def ready_reason(self) -> str | None:
        """``None`` when the sink can deliver, else why not (never a secret)."""
        return "waiting for SinkReady" if self.awaiting_signal else None

    def send(self, alert: Alert) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@dataclass(frozen=True, slots=True)
class _Retry:
    """Timer message: a failed sink's backoff delay has passed."""

    sink: str
    generation: int
    incarnation: int  # a timer set by a crashed predecessor is ignored


@dataclass(frozen=True, slots=True)
class _Flush:
    """Self-message: keep sending a backlog after other mail had its turn."""

    sink: str


@dataclass(frozen=True, slots=True)
class _ReadyPoll:
    """Timer message: re-check sinks that were not ready."""


class _SinkState:
    """What the actor knows about one sink. Touched only by the actor thread."""

    __slots__ = ("sink", "queue", "sent", "failed", "rejected", "dropped", "attempt",
                 "generation", "retry_timer", "flush_queued", "ready", "reason", "last_error")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.queue: deque[Alert] = deque()
        self.sent = self.failed = self.rejected = self.dropped = 0
        self.attempt = 0                    # consecutive failures of the head alert
        self.generation = 0
        self.retry_timer: int | None = None
        self.flush_queued = False
        self.ready = False
        self.reason: str | None = "not checked yet"
        self.last_error: str | None = None


class AlertsActor(Actor):
    """Fans every Alert out to ``sinks``; see the module docstring for why."""
    #: its sinks may block on HTTP
    execution = THREADED

    def __init__(self, ctx: ActorContext, sinks: Sequence[Sink], *, max_pending: int = 1000,
                 backoff: Backoff = DEFAULT_BACKOFF, ready_poll_s: float = 5.0,
                 dedup_window_s: float = 300.0, batch: int = 20) -> None:
        super().__init__(ctx)
        if max_pending < 1 or batch < 1 or not ready_poll_s > 0 or dedup_window_s < 0:
            raise ValueError("alerts: max_pending and batch must be >= 1, ready_poll_s > 0, "
                             "dedup_window_s >= 0")
        self._sinks: dict[str, _SinkState] = {}
        for sink in sinks:
            if not isinstance(sink, Sink):
                raise TypeError(f"alerts: {sink!r} is not a Sink")
            if sink.name in self._sinks:
                raise ValueError(f"alerts: duplicate sink name {sink.name!r}")
            self._sinks[sink.name] = _SinkState(sink)
        self.max_pending = max_pending
        self.backoff = backoff
        self.ready_poll_s = ready_poll_s
        self.dedup_window_s = dedup_window_s
        self.batch = batch
        self._rng = random.Random(f"{ctx.seed}:{ctx.name}")
        self._poll_timer: int | None = None
        self._dedup_seen: OrderedDict[str, float] = OrderedDict()
        self.received = 0
        self.deduplicated = 0
        self.unknown_ready = 0

    # -- lifecycle -----------------------------------------------------------

    def on_start(self) -> None:
        for st in self._sinks.values():
            self._check_ready(st, quiet=True)
        self.log.info("alerts: sinks {}", ", ".join(
            f"{n} ({'ready' if st.ready else st.reason})" for n, st in self._sinks.items()) or "none")

    def on_idle(self) -> None:
        self.ctx.cell.info = self.figures()

    def on_stop(self) -> None:
        for timer in [self._poll_timer] + [st.retry_timer for st in self._sinks.values()]:
            self.ctx.cancel_timer(timer)
        for name, st in self._sinks.items():
            if st.queue:
                self.log.warning("alerts: {} alert(s) not delivered to {} at stop ({}): {}",
                                 len(st.queue), name, st.last_error or st.reason or "pending",
                                 "; ".join(f"[{a.severity}] {a.title}" for a in list(st.queue)[:20])
                                 + ("; ..." if len(st.queue) > 20 else ""))

    # -- messages ------------------------------------------------------------

    @handles(Alert)
    def on_alert(self, alert: Alert) -> None:
        self.received += 1
        if self._is_duplicate(alert):
            self.deduplicated += 1
            self.log.debug("alerts: duplicate {!r} suppressed (dedup_key {!r})",
                           alert.title, alert.dedup_key)
            return
        for st in self._sinks.values():
            self._enqueue(st, alert)
        for st in self._sinks.values():
            self._kick(st)

    @handles(SinkReady)
    def on_sink_ready(self, msg: SinkReady) -> None:
        st = self._sinks.get(msg.sink)
        if st is None:
            self.unknown_ready += 1
            self.log.warning("alerts: SinkReady for unknown sink {!r} (known: {})",
                             msg.sink, ", ".join(self._sinks) or "none")
            return
        st.sink.mark_ready()
        self._kick(st)

    @handles(_Retry)
    def on_retry(self, msg: _Retry) -> None:
        st = self._sinks.get(msg.sink)
        if st is None or msg.generation != st.generation \
                or msg.incarnation != self.ctx.cell.incarnation:
            return  # stale timer
        st.retry_timer = None
        self._kick(st)

    @handles(_Flush)
    def on_flush(self, msg: _Flush) -> None:
        st = self._sinks[msg.sink]
        st.flush_queued = False
        self._kick(st)

    @handles(_ReadyPoll)
    def on_ready_poll(self, _msg: _ReadyPoll) -> None:
        self._poll_timer = None
        for st in self._sinks.values():
            self._kick(st)

    # -- delivery ------------------------------------------------------------

    def _enqueue(self, st: _SinkState, alert: Alert) -> None:
        if len(st.queue) >= self.max_pending:
            old = st.queue.popleft()
            st.dropped += 1
            self.log.warning(
                "alerts: {} queue full ({}), dropped oldest [{}] {!r} from {} at {} "
                "({} dropped so far)", st.sink.name, self.max_pending, old.severity,
                old.title, old.source, old.ts.isoformat(), st.dropped)
            if not st.queue:  # max_pending == 1 and the head was mid-retry
                self._reset_retry(st)
        st.queue.append(alert)

    def _kick(self, st: _SinkState) -> None:
        """Deliver what ``st`` has pending, if it is ready and not backing off."""
        if not st.queue or st.retry_timer is not None:
            return
        if not self._check_ready(st):
            self._schedule_poll()
            return
        for _ in range(self.batch):
            if not st.queue:
                return
            if not self._deliver_head(st):
                return
        if st.queue and not st.flush_queued:
            st.flush_queued = True
            self.ctx.tell_self(_Flush(st.sink.name))

    def _deliver_head(self, st: _SinkState) -> bool:
        alert = st.queue[0]
        try:
            st.sink.send(alert)
        except SinkError as exc:
            error, permanent = str(exc), exc.permanent
        except Exception as exc:  # noqa: BLE001 - a buggy sink is a failing sink, not a crash
            error, permanent = scrub(f"{st.sink.name}: {type(exc).__name__}: {exc}", ()), False
        else:
            st.queue.popleft()
            st.sent += 1
            st.attempt = 0
            st.last_error = None
            return True
        st.last_error = error
        if permanent:
            st.queue.popleft()
            st.rejected += 1
            st.attempt = 0
            self.log.error("alerts: {} rejected [{}] {!r} from {}, not retried: {}",
                           st.sink.name, alert.severity, alert.title, alert.source, error)
            return True
        st.failed += 1
        st.attempt += 1
        delay = self.backoff.delay(st.attempt, self._rng)
        st.generation += 1
        st.retry_timer = self.ctx.schedule(delay, _Retry(st.sink.name, st.generation,
                                                                self.ctx.cell.incarnation))
        self.log.warning("alerts: {} failed (attempt {}, {} pending), retry in {:.2f}s: {}",
                         st.sink.name, st.attempt, len(st.queue), delay, error)
        return False

    def _reset_retry(self, st: _SinkState) -> None:
        self.ctx.cancel_timer(st.retry_timer)
        st.retry_timer = None
        st.generation += 1
        st.attempt = 0

    def _check_ready(self, st: _SinkState, *, quiet: bool = False) -> bool:
        try:
            reason = st.sink.ready_reason()
        except Exception as exc:  # noqa: BLE001 - a sink that cannot tell is not ready
            reason = scrub(f"readiness check failed: {type(exc).__name__}: {exc}", ())
        ready = reason is None
        if not quiet and (ready != st.ready or reason != st.reason):
            if ready:
                self.log.info("alerts: sink {} is ready ({} pending)", st.sink.name, len(st.queue))
            else:
                self.log.warning("alerts: sink {} not ready: {} ({} pending)",
                                 st.sink.name, reason, len(st.queue))
        st.ready, st.reason = ready, reason
        return ready

    def _schedule_poll(self) -> None:
        if self._poll_timer is None:
            self._poll_timer = self.ctx.schedule(self.ready_poll_s, _ReadyPoll())

    def _is_duplicate(self, alert: Alert) -> bool:
        key = alert.dedup_key
        if key is None or self.dedup_window_s <= 0:
            return False
        now = self.ctx.clock.monotonic()
        seen = self._dedup_seen
        while seen:  # oldest first: prune what left the window
            first_at = next(iter(seen.values()))
            if now - first_at < self.dedup_window_s and len(seen) < 10_000:
                break
            seen.popitem(last=False)
        if key in seen:
            return True
        seen[key] = now
        return False

    # -- introspection -------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        """Plain-data figures for /actors and /metrics (no secrets: reasons and
        errors are scrubbed before they are stored)."""
        sinks: dict[str, dict[str, Any]] = {
            name: {"kind": st.sink.kind, "ready": st.ready, "not_ready_reason": st.reason,
                   "sent": st.sent, "failed": st.failed, "rejected": st.rejected,
                   "pending": len(st.queue), "dropped": st.dropped,
                   "retrying": st.retry_timer is not None, "attempt": st.attempt,
                   "last_error": st.last_error}
            for name, st in list(self._sinks.items())
        }
        totals = {k: sum(s[k] for s in sinks.values())
                  for k in ("sent", "failed", "rejected", "pending", "dropped")}
        return {"received": self.received, "deduplicated": self.deduplicated,
                "unknown_ready": self.unknown_ready, **totals, "sinks": sinks}
