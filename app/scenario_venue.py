"""A scenario through a real venue client: ccxt and the Binance face on loopback.

``main.py scenario --venue binanceusdm FILES`` runs the same files as the
native path, but the runtime trades through the ccxt adapter
(exchange.ccxt_venue) with the unmodified ccxt library, over HTTP and
WebSockets on loopback, against the Binance-compatible face
(exchange.binance_face) of the same simulated engine. The engine runs on the
scenario's virtual clock; its delays are virtual timers fired with the actor
system's own (exchange.virtual_wire.VirtualTiming), and every request, stream
frame and venue timer in flight is counted for quiescence
(exchange.virtual_wire.WireLedger), so virtual time never moves on while the
wire is busy. The face writes the run directory's ``events.jsonl``, the
ground truth the invariants are checked against, as the embedded venue does.

The venue outlives the runtime: a scenario ``crash`` kills the runtime (its
ccxt client with it), the face keeps serving, its resting orders fill, its
timers fire as virtual time moves, and the restarted runtime reconnects
through ccxt and finds what happened. Market data and ``exchange:`` entries go
to the face (its engine and its streams) whether the runtime is up or not.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from config.schema import Config
from runtime.clock import VirtualClock

#: the venues a scenario can run through, by ``--venue`` name
VENUES = ("binanceusdm",)
#: the face's API key for the scenario's account (a test key on loopback)
SCENARIO_KEY, SCENARIO_SECRET = "tw-scenario-key", "tw-scenario-secret"
#: wall seconds the runner waits for the face to go idle while the runtime is down
IDLE_TIMEOUT_S = 30.0


class VenueStartFailed(RuntimeError):
    """The face or ccxt could not be brought up for the scenario (says why)."""


class LoopbackVenue:
    """The Binance face of one scenario's engine, and what the runtime needs to
    reach it through ccxt (``settings``, ``rules``, ``ledger``, ``timing``)."""

    def __init__(self, venue: str, config: Config, exchange_spec: dict[str, Any],
                 symbols: tuple[str, ...], run_dir: Path, clock: VirtualClock) -> None:
        if venue not in VENUES:
            raise ValueError(f"unknown scenario venue {venue!r}; known: {', '.join(VENUES)}")
        from app.launcher import new_engine
        from exchange.binance_face.auth import ApiKey
        from exchange.binance_face.server import BinanceFaceServer
        from exchange.virtual_wire import VirtualTiming, WireLedger
        from messages.bounds import bounds_from_config

        self.venue = venue
        self.account = config.exchange.account
        self.hedge_mode = bool(config.risk.hedging_mode.get(self.account, False))
        self.exchange_spec = dict(exchange_spec)
        self.symbols = symbols
        self.ledger = WireLedger()
        self.timing = VirtualTiming(clock.monotonic, self.ledger)
        self.clock = clock
        self.engine = new_engine(config, self.exchange_spec, clock,
                                 bounds_from_config(config.bounds))
        self.server = BinanceFaceServer(
            self.engine, out_dir=run_dir, keys=(ApiKey(SCENARIO_KEY, SCENARIO_SECRET,
                                                       self.account),),
            symbols=list(symbols), timing=self.timing)
        self.settings: Any = None
        self.rules: dict[str, dict[str, str]] = {}

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> LoopbackVenue:
        """Serve on a free loopback port; load the markets through ccxt (the
        instrument rules the risk gate gets, as ``run --venue`` does)."""
        from exchange.binance_face.urls import ccxt_urls
        from exchange.ccxt_venue.settings import VenueSettings
        from exchange.ccxt_venue.start import StartRefused, check_start, preflight

        self.server.start()
        self.settings = VenueSettings(
            exchange_id=self.venue, api_key=SCENARIO_KEY, api_secret=SCENARIO_SECRET,
            testnet=True, urls=ccxt_urls(self.server.host, self.server.port),
            account=self.account, hedge_mode=self.hedge_mode, client_throttle=False,
            close_wait_ms=0)
        try:
            pre = preflight(self.settings, list(self.symbols))
            check_start(pre, hedge_mode=self.hedge_mode, account=self.account,
                        exchange_id=self.venue)
        except StartRefused as exc:
            self.stop()
            raise VenueStartFailed(str(exc)) from None
        self.rules = pre.rules
        return self

    def stop(self) -> None:
        self.ledger.unbind()
        self.server.stop()

    def apply_faults(self) -> None:
        """The ``exchange:`` block's faults, as the embedded venue applies them at
        each runtime start (its settings are the engine's already)."""
        from config.sim_exchange import split_spec

        _settings, faults = split_spec(self.exchange_spec)
        if faults:
            self.server.inject(faults)

    # -- timeline entries -----------------------------------------------------------------

    def deliver(self, msg: Any) -> None:
        """A quote, bar or ``ExchangeFault`` to the face (ValueError: a bad fault).
        Returns once the face has applied it; what it streams is counted."""
        from messages import Bar, ExchangeFault, Quote

        if isinstance(msg, (Quote, Bar)):
            self.server.push(msg)
        elif isinstance(msg, ExchangeFault):
            self.server.inject(dict(msg.spec))
        else:
            raise TypeError(f"not an exchange entry: {type(msg).__name__}")

    def run_down_until(self, t: float) -> None:
        """The runtime is down: fire the face's timers due by ``t`` in order, each
        one's effect done before virtual time moves on."""
        while True:
            due = self.timing.next_due()
            if due is None or due > t:
                break
            self.clock.advance_to(max(self.clock.monotonic(), due))
            self.timing.fire_due(due)
            self.wait_idle()
        self.clock.advance_to(max(self.clock.monotonic(), t))

    def wait_idle(self, timeout_s: float = IDLE_TIMEOUT_S) -> None:
        """Wait (wall time: I/O on loopback) until nothing is counted on the wire."""
        deadline = time.monotonic() + timeout_s
        while self.ledger.count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the venue's wire did not go idle within {timeout_s:g}s "
                                   f"({self.ledger.count} in flight)")
            time.sleep(0.001)

    def launch_fields(self) -> dict[str, Any]:
        """The LaunchSpec fields of a runtime that trades here."""
        return {"venue": self.settings, "instrument_rules": dict(self.rules),
                "wire": self.ledger, "timer_sources": (self.timing,)}
