"""SimVenue: the simulated exchange hosted in-process, on the runtime's clock.

The venue actor owns a :class:`~exchange.engine.SimulatedExchange`. Commands
arrive as messages (sent by ``exchange.inprocess.InProcessAdapter``); each
event the engine produces is delivered to the connected client actor
(default ``gateway``) with ``ctx.schedule(delay, event, target=client)``, so
exchange latency rides the (virtual) clock and a scenario stays
deterministic. Market data (``Quote``/``Bar``) told to the venue moves its
book and is forwarded to the client if subscribed. ``ExchangeFault(spec)``
injects faults or changes behaviour (the scenario ``exchange:`` entries).

Stream semantics match the WebSocket transport: one session at a time; a
``Connect`` starts a fresh session (no subscriptions); ``drop_stream``
ends it with a ``StreamStatus(connected=False)`` and events are lost until
the client connects again (it resyncs by querying); while stalled, events are
held and released on resume. A command arriving with no session is answered
with a refusal (``not_connected``), as a socket adapter would.

``config`` may be a scenario's whole ``exchange:`` block: settings
(``latency_ms``...) configure the engine, faults in it (``reject_next``...)
are applied when the venue starts.

Pass the same engine object in the ``ChildSpec`` args to keep the exchange's
state across a venue actor restart; otherwise a restart is an exchange crash
that loses everything.
"""

from __future__ import annotations

import itertools
from typing import Any

from config.sim_exchange import SimSettings
from exchange.emit import ENGINE, REQUESTER, TRANSPORT, Emit, StreamAction
from exchange.engine import SimulatedExchange
from exchange.protocol import refusal
from exchange.session import MAX_HELD, Session, handle_subscription
from messages import (
    Bar,
    Connect,
    Disconnect,
    ExchangeError,
    ExchangeFault,
    ExchangeTimer,
    Quote,
    StreamStatus,
    Subscribe,
    Unsubscribe,
)
from messages.exchange import COMMAND_TYPES
from runtime.actor import Actor, handles


class SimVenue(Actor):
    def __init__(self, ctx: Any, engine: SimulatedExchange | None = None, *,
                 config: SimSettings | dict | None = None, target: str = "gateway",
                 events_path: Any = None, auto_connect: bool = True,
                 strict: bool = False) -> None:
        super().__init__(ctx)
        if engine is None:
            engine = SimulatedExchange(config, clock=ctx.clock.now, strict=strict)
        elif config is not None:
            raise ValueError("SimVenue: give an engine or a config, not both")
        self.engine = engine
        self.events_path = events_path
        self.target = target
        self.session: Session | None = (Session(target, promiscuous=True) if auto_connect
                                        else None)
        self._stall_token = itertools.count(1)
        self._active_stall = 0
        self.delivered = 0
        self.undelivered = 0
        self.refused = 0

    # -- lifecycle ----------------------------------------------------------------

    def on_start(self) -> None:
        self.engine.start(self.events_path)
        if self.session is not None:
            self.engine.log.append("client_connected", self.ctx.clock.now(),
                                   client=self.session.client, session=self.session.id)

    def on_stop(self) -> None:
        if self.events_path is not None:
            self.engine.stop()

    @property
    def connected_clients(self) -> frozenset[str]:
        """Read by ``InProcessAdapter.connected`` (one attribute read)."""
        return frozenset((self.session.client,)) if self.session is not None else frozenset()

    # -- handlers -------------------------------------------------------------------

    @handles(*COMMAND_TYPES)
    def on_command(self, cmd: Any) -> None:
        if self.session is None:
            self.refused += 1
            self._tell_now(self.target, refusal(cmd, "not_connected",
                                                "no stream session with the venue",
                                                self.ctx.clock.now()))
            return
        if isinstance(cmd, (Subscribe, Unsubscribe)):
            now = self.ctx.clock.now()
            for event in handle_subscription(self.engine, self.session, cmd, now):
                self._route([Emit(self.engine.stream_delay(now), event, REQUESTER)])
            return
        self._route(self.engine.handle(cmd, self.ctx.clock.now(),
                                       account=self.session.bind(cmd)))

    @handles(Quote, Bar)
    def on_market(self, event: Any) -> None:
        self._route(self.engine.handle(event, self.ctx.clock.now()))

    @handles(ExchangeFault)
    def on_fault(self, fault: ExchangeFault) -> None:
        emits = self.engine.handle(fault, self.ctx.clock.now())
        for e in emits:
            if isinstance(e.event, ExchangeError) and e.event.code == "bad_fault":
                self.log.error("bad exchange fault {}: {}", fault.spec, e.event.reason)
        self._route([e for e in emits if e.audience != REQUESTER])

    @handles(ExchangeTimer)
    def on_timer(self, timer: ExchangeTimer) -> None:
        if timer.kind == "stall_end":
            if int(timer.key or 0) == self._active_stall:
                self._resume("stall ended")
            return
        self._route(self.engine.handle(timer, self.ctx.clock.now()))

    @handles(Connect)
    def on_connect(self, msg: Connect) -> None:
        """A new session (fresh subscriptions); a live one is replaced silently."""
        now = self.ctx.clock.now()
        self.target = msg.client
        self.session = Session(msg.client, msg.account)
        self._active_stall = 0
        self.engine.log.append("client_connected", now, client=msg.client,
                               session=self.session.id)
        self._tell_now(msg.client, StreamStatus(True, "connected", now))

    @handles(Disconnect)
    def on_disconnect(self, msg: Disconnect) -> None:
        if self.session is not None and self.session.client == msg.client:
            self.engine.log.append("client_disconnected", self.ctx.clock.now(),
                                   client=msg.client, session=self.session.id,
                                   reason="closed by client")
            self.session = None

    # -- delivery ---------------------------------------------------------------------

    def _route(self, emits: list[Emit]) -> None:
        for e in emits:
            if e.audience == ENGINE:
                self.ctx.schedule(e.delay_s, e.event)
            elif e.audience == TRANSPORT:
                self._stream_action(e.event)
            else:
                session = self.session
                if session is None:
                    self.undelivered += 1
                elif session.wants(e) or e.audience == REQUESTER:
                    if session.stalled:
                        if len(session.held) >= MAX_HELD:
                            session.held.popleft()
                            self.undelivered += 1
                        session.held.append(e.event)
                    else:
                        self._send(session.client, e.delay_s, e.event)

    def _send(self, client: str, delay_s: float, event: Any) -> None:
        self.delivered += 1
        cfg = self.engine.config
        if delay_s <= 0 and not cfg.latency_ms and not cfg.latency_jitter_ms:
            self.ctx.tell(client, event)
        else:
            self.ctx.schedule(delay_s, event, target=client)

    def _tell_now(self, client: str, event: Any) -> None:
        self.ctx.tell(client, event)

    def _stream_action(self, action: StreamAction) -> None:
        session = self.session
        if action.kind == "drop":
            if session is not None:
                self.session = None
                self.undelivered += len(session.held)
                self.engine.log.append("client_disconnected", self.ctx.clock.now(),
                                       client=session.client, session=session.id,
                                       reason=action.reason)
                self._tell_now(session.client, StreamStatus(False, action.reason,
                                                            self.ctx.clock.now()))
        elif action.kind == "stall":
            if session is not None:
                session.stalled = True
                self._active_stall = next(self._stall_token)
                if action.duration_s is not None:
                    self.ctx.schedule(action.duration_s,
                                      ExchangeTimer("stall_end", str(self._active_stall)))
        elif action.kind == "resume":
            self._resume(action.reason)

    def _resume(self, reason: str) -> None:
        session = self.session
        self._active_stall = 0
        if session is None or not session.stalled:
            return
        session.stalled = False
        while session.held:
            event = session.held.popleft()
            self._send(session.client, self.engine.stream_delay(self.ctx.clock.now()), event)
        self.log.debug("venue stream resumed: {}", reason)
