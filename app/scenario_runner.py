"""``main.py scenario``: deterministic runs of scenario files in virtual time.

The whole tree runs with real actor threads on a :class:`VirtualClock`;
the runner advances time to each timeline entry only when the system is
quiescent, injects the entry, and at the end checks the scenario's
``expect`` block and every safety invariant. Same file, same seed: the same
summary.json, apart from times and ids (``summary.comparable``).

How entries are injected (DESIGN section 9):

* ``quote`` / ``bar`` go to the simulated exchange, which moves its book and
  streams them to the gateway like venue market data. A quote without sizes
  gets a deep book (``DEFAULT_QUOTE_SIZE``) so fills are not capped by it.
* ``signal`` is strategy output handed to the coordinator (it still passes
  the gate). Scenarios run the ``none`` strategy unless their config names
  one, so timeline signals are the only ones.
* ``exchange`` is a fault or behaviour change of the simulated exchange.
* ``crash`` kills the runtime (mailboxes dropped, nothing flushed); the
  exchange keeps its state and keeps working, as a venue would: ``quote``,
  ``bar`` and ``exchange`` entries between ``crash`` and ``restart`` go
  straight to the exchange engine (its resting orders fill, events.jsonl
  records it, nobody is told). ``restart`` starts a new runtime on the same
  store, which recovers and reconciles before trading, and so has to find
  what happened while it was down.
  ``crash: {point: after_intent | after_submit | after_fill}`` arms a named
  point instead: the runtime dies when the coordinator next reaches it, at
  that instant of virtual time (``app.crash_points``). A point not
  reached by the ``restart`` entry is an error (the scenario would silently
  test less), unless the run is lenient (``strict_crash_points=False``, for
  generated timelines): then the runtime dies at the restart entry's time.
* ``control`` turns the kill switch on or off; ``end`` stops the run.
"""

from __future__ import annotations

import heapq
import itertools
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from loguru import logger

from config import config_hash
from messages.types import Quantity
from runtime.clock import EPOCH_DEFAULT, VirtualClock
from app.crash_points import SERVICE as CRASH_SERVICE
from app.crash_points import CrashPoints, kill_at_point
from app.launcher import LaunchSpec, Runtime
from app.scenario_expect import check_expect, exit_and_hedge_qty
from app.scenario_file import (BarEvent, ControlEvent, CrashEvent, EndEvent, ExchangeEvent,
                                   GroupEvent, QuoteEvent, RestartEvent, Scenario, SignalEvent,
                                   load_scenario)
from app.summary import collect_summary, load_run_records, write_summary

DEFAULT_QUOTE_SIZE = Quantity(Decimal("1000000"))
#: with no ``end`` entry, run this long past the last entry (timers settle)
TAIL_S = 5.0


class ScenarioError(RuntimeError):
    """The scenario asked for something the runtime cannot do (named with its line)."""


@dataclass
class ScenarioResult:
    name: str
    path: str
    run_dir: Path
    summary: dict[str, Any]
    wall_s: float

    @property
    def exit_code(self) -> int:
        from app.summary import exit_code

        return exit_code(self.summary)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


class ScenarioRun:
    def __init__(self, scenario: Scenario, run_dir: Path, *, start: datetime = EPOCH_DEFAULT,
                 strict_crash_points: bool = True, venue: str | None = None) -> None:
        self.sc = scenario
        self.points = CrashPoints()
        self.armed_line: int | None = None
        #: named points the runtime died at, in order (summary ``crash_points``)
        self.points_reached: list[str] = []
        self.strict_crash_points = strict_crash_points
        self.run_dir = run_dir
        self.clock = VirtualClock(start)
        cfg = scenario.config
        if "strategy" not in (scenario.config_overrides or {}):
            from config.schema import StrategyConfig

            cfg = cfg.model_copy(update={"strategy": StrategyConfig(name="none")})
        self.config = cfg
        #: ``--venue``: the exchange is reached through a real client over loopback
        #: (app.scenario_venue); None: the embedded venue actor
        self.venue_name = venue
        self.venue: Any = None
        self.engine: Any = None
        self.rt: Runtime | None = None
        self.crashes = 0
        self.injected = 0
        #: exchange timers (cancel acknowledgements) due while the runtime is down
        self._down_timers: list[tuple[float, int, Any]] = []
        self._down_seq = itertools.count()
        #: entries applied to the exchange while the runtime was down
        self.while_down = 0
        from app.report_sampler import Sampler

        #: report time series, one sample per timeline step (virtual seconds)
        self.sampler = Sampler(min_interval_s=0.0)

    def _spec(self) -> LaunchSpec:
        over = self.venue.launch_fields() if self.venue is not None else {}
        return LaunchSpec(self.config, self.run_dir, self.sc.symbols, self.clock,
                          run_id=f"{Path(self.sc.path).stem}", config_hash=config_hash(self.config),
                          seed=self.sc.seed, exchange_spec=dict(self.sc.exchange),
                          engine=self.engine, **over)

    def _start(self) -> None:
        if self.venue is not None:
            self.venue.apply_faults()  # as the embedded venue does at each start
            self.rt = Runtime(self._spec()).start()
            return
        if self.engine is not None and self.engine.log.is_open:
            self.engine.log.close()  # opened while down; the new venue reopens it
        if self._down_timers:
            logger.warning("scenario {}: {} exchange timer(s) pending at restart dropped",
                           self.sc.name, len(self._down_timers))
            self._down_timers.clear()
        self.rt = Runtime(self._spec()).start()
        self.engine = self.rt.engine

    def run(self) -> ScenarioResult:
        wall0 = time.monotonic()
        started = self.clock.now()
        logger.info("scenario {} ({}): seed {}, {} timeline entries, virtual time from {}",
                    self.sc.name, self.sc.path, self.sc.seed, len(self.sc.timeline), started)
        self._open_venue()
        try:
            try:
                self._start()
                self._play()
            finally:
                self.points.release()  # never leave a handler held if the run failed
                if self.rt is not None and self.rt.system is not None \
                        and not self.rt.system._shut:
                    self.rt.stop()
                if self.venue is not None:
                    self.venue.ledger.unbind()
            return self._finish(started, wall0)
        finally:
            if self.venue is not None:  # after the summary: it reads the venue's positions
                self.venue.stop()

    def _open_venue(self) -> None:
        if self.venue_name is None:
            return
        from app.scenario_venue import LoopbackVenue, VenueStartFailed

        try:
            self.venue = LoopbackVenue(self.venue_name, self.config, dict(self.sc.exchange),
                                       self.sc.symbols, self.run_dir, self.clock).start()
        except (VenueStartFailed, ValueError) as exc:
            raise ScenarioError(f"{self.sc.path}: venue {self.venue_name}: {exc}") from None
        self.engine = self.venue.engine

    def _play(self) -> None:
        for entry in self.sc.timeline:
            self._advance(float(entry.at))
            if isinstance(entry.event, EndEvent):
                break
            self._inject(entry)
            self._sample()
        if self.sc.end_at is None:
            last = float(self.sc.timeline[-1].at) if self.sc.timeline else 0.0
            self._advance(last + TAIL_S)
        self._sample()

    def _finish(self, started: datetime, wall0: float) -> ScenarioResult:
        records = load_run_records(self.run_dir)
        extra: dict[str, Any] = {"scenario": self.sc.name, "path": self.sc.path,
                                 "seed": self.sc.seed, "crashes": self.crashes,
                                 "crash_points": list(self.points_reached),
                                 "entries_while_down": self.while_down,
                                 "alerts": self._alerts()}
        system = self.rt.system if self.rt is not None else None
        if system is not None and system.halted:
            extra["halted"] = {"reason": system.halt_reason}
        summary = collect_summary(self.rt, started_at=started.isoformat(),
                                  ended_at=self.clock.now().isoformat(), extra=extra,
                                  records=records)
        failures = check_expect(self.sc.expect, summary, exit_and_hedge_qty(*records))
        summary["expect"] = {"passed": not failures, "failures": failures}
        logger.info("scenario {}: expect {}{}; {} invariant violations", self.sc.name,
                    "failed: " if failures else "passed", "; ".join(failures),
                    len(summary["invariant_violations"]))
        write_summary(self.run_dir / "summary.json", summary)
        try:
            from app.report import write_report

            write_report(self.run_dir, summary, self.sampler,
                         title=f"Tradewarden scenario: {self.sc.name}")
        except Exception:  # noqa: BLE001 - a report bug never changes the verdict
            logger.exception("could not write report.html for {}", self.sc.name)
        return ScenarioResult(self.sc.name, self.sc.path, self.run_dir, summary,
                              time.monotonic() - wall0)

    # -- timeline ---------------------------------------------------------------------

    def _sample(self) -> None:
        if self.rt is not None:
            self.sampler.sample(self.rt, self.clock.monotonic(), force=True)

    def _advance(self, t: float) -> None:
        if self.rt is not None and self.armed_line is not None:
            if self.rt.require_system().run_until(t, held=self.points.held):
                self._crash_at_point()
        elif self.rt is not None:
            self.rt.require_system().run_until(t)
        if self.rt is None and self.venue is not None:  # the venue works on by itself
            self.venue.run_down_until(t)
        elif self.rt is None:  # crashed and not yet restarted: only the exchange works
            while self._down_timers and self._down_timers[0][0] <= t:
                due, _, timer = heapq.heappop(self._down_timers)
                self.clock.advance_to(max(self.clock.monotonic(), due))
                self._engine_handle(timer)
            self.clock.advance_to(max(self.clock.monotonic(), t))

    def _settle(self) -> None:
        if self.rt is None:
            return
        if self.armed_line is None:
            self.rt.require_system().wait_quiescent()
        elif self.rt.require_system().settle(time.monotonic() + 60.0, held=self.points.held):
            self._crash_at_point()

    def _crash_at_point(self) -> None:
        self.crashes += 1
        self.points_reached.append(str(self.points.reached_point))
        self.armed_line = None
        logger.warning("scenario {}: runtime crash at point {} ({} in {}) at t={}s", self.sc.name,
                       self.points.reached_point, self.points.detail, self.points.holder,
                       self.clock.monotonic())
        kill_at_point(self.rt, self.points)
        self.rt = None
        if self.venue is not None:
            self.venue.ledger.unbind()

    def _inject(self, entry: Any) -> None:
        ev, now = entry.event, self.clock.now()
        where = f"{self.sc.path}:{entry.line}"
        if isinstance(ev, RestartEvent):
            if self.rt is not None and self.armed_line is not None:
                if self.strict_crash_points:
                    raise ScenarioError(f"{where}: the crash point {self.points.armed} armed on "
                                        f"line {self.armed_line} was never reached")
                self._crash_now(entry)
            if self.rt is not None:
                raise ScenarioError(f"{where}: restart without a crash before it")
            self._start()
            return
        if self.rt is None:
            if isinstance(ev, (QuoteEvent, BarEvent, ExchangeEvent)):
                self.injected += 1
                self.while_down += 1
                if self.venue is not None:
                    self._to_venue(_exchange_message(ev, now), where)
                    self.venue.wait_idle()
                else:
                    self._engine_handle(_exchange_message(ev, now), where)
                return
            raise ScenarioError(f"{where}: {entry.kind} while the runtime is crashed "
                                "(add a restart entry before it)")
        tell = self.rt.require_system().tell
        self.injected += 1
        if isinstance(ev, (QuoteEvent, BarEvent, ExchangeEvent)):
            if self.venue is not None:
                self._to_venue(_exchange_message(ev, now), where)
            else:
                tell("venue", _exchange_message(ev, now))
        elif isinstance(ev, SignalEvent):
            from messages.orders import ExitPlan, Signal

            plan = None
            if (ev.take_profit, ev.trailing_distance, ev.trailing_percent,
                    ev.time_limit_s) != (None, None, None, None):
                plan = ExitPlan(ev.stop_loss, ev.take_profit, ev.trailing_distance,
                                ev.trailing_percent, ev.time_limit_s)
            tell("coordinator", Signal(ev.symbol, ev.side, ev.qty, now, stop_loss=ev.stop_loss,
                                       strategy=ev.strategy, account=ev.account,
                                       reduce_only=ev.reduce_only, exits=plan))
        elif isinstance(ev, ControlEvent):
            from messages.control import KillSwitch

            tell("coordinator", KillSwitch(ev.kill_switch, ev.reason or "scenario control", now))
        elif isinstance(ev, CrashEvent) and ev.point is not None:
            self.points.arm(ev.point)
            self.rt.require_system().services[CRASH_SERVICE] = self.points
            self.armed_line = entry.line
        elif isinstance(ev, CrashEvent):
            self._crash_now(entry)
        elif isinstance(ev, GroupEvent):
            if self.rt.require_system().directory.get("groups") is None:
                raise ScenarioError(f"{where}: group entries need the order-group supervisor, "
                                    "which this runtime does not run yet")
            from messages.control import SubmitGroup
            from trading.group_spec import GroupSpecError, parse_group, plain_spec

            spec = plain_spec(ev.spec)  # dates and floats as the codec carries them
            try:  # a typo in a safety scenario is an error with its line, not a quiet no-op
                parse_group(spec, default_id=str(spec.get("id") or "check"))
            except GroupSpecError as exc:
                raise ScenarioError(f"{where}: group.{exc}") from None
            tell("groups", SubmitGroup(spec, now))
        self._settle()

    def _to_venue(self, msg: Any, where: str) -> None:
        try:
            self.venue.deliver(msg)
        except ValueError as exc:
            raise ScenarioError(f"{where}: exchange: {exc}") from None

    def _engine_handle(self, msg: Any, where: str = "") -> None:
        """The exchange works on without a runtime: ``msg`` goes to its engine on the
        virtual clock; what it would stream goes nowhere (no session), what it
        schedules for itself (cancel acknowledgements) is run by ``_advance``."""
        engine = self.engine
        if engine is None:
            raise ScenarioError(f"{where}: the exchange is not running")
        if not engine.log.is_open:
            engine.log.open(self.run_dir / "events.jsonl")
        now_s = self.clock.monotonic()
        try:
            timers = engine.handle_unattended(msg, self.clock.now())
        except ValueError as exc:
            raise ScenarioError(f"{where}: exchange: {exc}") from None
        for delay_s, timer in timers:
            heapq.heappush(self._down_timers, (now_s + delay_s, next(self._down_seq), timer))

    def _crash_now(self, entry: Any) -> None:
        self.crashes += 1
        self.armed_line = None
        self.points.disarm()
        logger.warning("scenario {}: runtime crash at t={}s", self.sc.name, entry.at)
        if self.rt is not None:
            self.rt.kill()
        self.rt = None
        if self.venue is not None:
            self.venue.ledger.unbind()

    # -- figures for expect -------------------------------------------------------------

    def _alerts(self) -> int:
        return int(self.rt.info("alerts").get("received", 0)) if self.rt else 0


def _exchange_message(ev: Any, now: datetime) -> Any:
    """The venue message of a ``quote``, ``bar`` or ``exchange`` entry."""
    if isinstance(ev, QuoteEvent):
        from messages.market import Quote

        return Quote(ev.symbol, ev.bid, ev.ask, now,
                     bid_size=ev.bid_size if ev.bid_size is not None else DEFAULT_QUOTE_SIZE,
                     ask_size=ev.ask_size if ev.ask_size is not None else DEFAULT_QUOTE_SIZE)
    if isinstance(ev, BarEvent):
        from messages.market import Bar

        return Bar(ev.symbol, ev.open, ev.high, ev.low, ev.close, ev.volume, now)
    from messages.exchange import ExchangeFault

    return ExchangeFault(dict(ev.spec))


def run_scenario(path: str | Path, out_root: Path, config_path: str | None = None,
                 logs: Any = None, venue: str | None = None) -> ScenarioResult:
    """Run one scenario file into ``out_root/<file stem>/``; with ``logs`` (the
    command's ``app.logs.RunLogs``) that directory gets its own run.log; with
    ``venue`` (``binanceusdm``) through ccxt and that venue's face on loopback
    (app.scenario_venue) instead of the embedded venue."""
    sc = load_scenario(path, config_path)
    run_dir = out_root / Path(path).stem
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    with logs.also_to(run_dir) if logs is not None else nullcontext():
        return ScenarioRun(sc, run_dir, venue=venue).run()
