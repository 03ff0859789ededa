"""The reconnect controller (rule 12).

Stream error handlers never block and never retry: they report
``StreamDown`` here and return. This actor decides when to try again:
exponential backoff with full jitter capped at 60 s, within a budget of 300
attempts per 5 minutes. Past the budget it stops trying, raises a critical
alert, and resumes only when the oldest attempt leaves the window.

The backoff runs between the *outcome* of one attempt and the next attempt,
never from timer to timer: a handshake still in flight when a short jittered
delay runs out would otherwise be cancelled by the next ``connect()``, and a
venue whose handshake takes longer than the early delays could only be
reached once the delays had grown past it, burning budget meanwhile. An
attempt that never reports back is retried after ``attempt_timeout_s``.
"""

from __future__ import annotations

import random
from collections import deque

from messages.alerts import Alert
from messages.connectivity import ReconnectNow, StreamDown, StreamUp, TryConnect
from runtime import Actor, Backoff, handles


class ReconnectController(Actor):
    def __init__(self, ctx, *, gateway: str = "gateway", alerts: str = "alerts",
                 backoff: Backoff | None = None, budget: int = 300, window_s: float = 300.0,
                 attempt_timeout_s: float = 15.0) -> None:
        super().__init__(ctx)
        if budget < 1 or not window_s > 0:
            raise ValueError(f"reconnect budget must be >= 1 and window_s > 0 (got {budget}, {window_s})")
        if not attempt_timeout_s > 0:
            raise ValueError(f"reconnect attempt_timeout_s must be > 0, got {attempt_timeout_s}")
        self.attempt_timeout_s = attempt_timeout_s
        self.gateway, self.alerts = gateway, alerts
        self.backoff = backoff or Backoff(base_s=0.5, max_s=60.0, jitter="full")
        self.budget, self.window_s = budget, window_s
        self.rng = random.Random(f"{ctx.seed}:reconnect")
        self.state = "connected"
        self.attempt = 0
        self.attempts: deque = deque()
        self.total_attempts = 0
        self.exhausted_alerts = 0
        self.generation = 0
        self.timer: int | None = None
        self.delays: list[float] = []

    @handles(StreamDown)
    def on_down(self, msg: StreamDown) -> None:
        if self.state == "connecting":  # the attempt in flight failed: back off, then retry
            self.state = "reconnecting"
            self._schedule_next()
            return
        if self.state != "connected":
            return  # the next attempt is already scheduled (or the budget is out)
        self.log.warning("stream down: {}; reconnecting", msg.reason)
        self.state = "reconnecting"
        self.attempt = 0
        self._schedule_next()

    @handles(StreamUp)
    def on_up(self, msg: StreamUp) -> None:
        if self.state != "connected":
            self.log.info("stream up after {} attempt(s)", self.attempt)
        self.state = "connected"
        self.attempt = 0
        self.generation += 1
        self.ctx.cancel_timer(self.timer)
        self._publish()

    @handles(TryConnect)
    def on_try(self, msg: TryConnect) -> None:
        if msg.generation != self.generation or self.state == "connected":
            return
        now = self.ctx.clock.monotonic()
        while self.attempts and now - self.attempts[0] >= self.window_s:
            self.attempts.popleft()
        if len(self.attempts) >= self.budget:
            self.state = "budget_exhausted"
            self.exhausted_alerts += 1
            wait = self.attempts[0] + self.window_s - now
            self.log.critical("reconnect budget of {} attempts per {}s used up; pausing {:.1f}s",
                              self.budget, self.window_s, wait)
            self.ctx.tell(self.alerts, Alert("critical", "reconnect budget exhausted",
                                             f"{self.budget} attempts in {self.window_s}s; trading "
                                             "stays fail-closed until the stream is back",
                                             self.ctx.clock.now(), "reconnect"))
            self.generation += 1
            self.timer = self.ctx.schedule(wait, TryConnect(self.generation))
            self._publish()
            return
        self.state = "connecting"
        self.attempts.append(now)
        self.total_attempts += 1
        self.attempt += 1
        self.ctx.tell(self.gateway, ReconnectNow(self.attempt))
        # StreamUp or StreamDown decides what comes next; this timer only
        # covers an attempt whose outcome never arrives.
        self.generation += 1
        self.timer = self.ctx.schedule(self.attempt_timeout_s, TryConnect(self.generation))
        self._publish()

    def _schedule_next(self) -> None:
        self.ctx.cancel_timer(self.timer)
        self.generation += 1
        delay = self.backoff.delay(self.attempt + 1, self.rng)
        self.delays.append(delay)
        self.timer = self.ctx.schedule(delay, TryConnect(self.generation))
        self._publish()

    def _publish(self) -> None:
        self.ctx.cell.info = {"state": self.state, "attempt": self.attempt,
                              "attempts_in_window": len(self.attempts),
                              "reconnect_attempts_total": self.total_attempts,
                              "budget_exhausted_total": self.exhausted_alerts}
