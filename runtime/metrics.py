"""Prometheus metrics, read from the runtime's published figures at scrape time.

Why a custom collector instead of counters in the code: the actors already
publish their figures (``cell.info``, the mailbox figures) for introspection,
so the metrics are a second view of the same numbers. Nothing is
instrumented inside a hot path, a scrape costs nothing while nobody scrapes,
and ``/metrics`` can never disagree with ``/actors``.

Each runtime gets its own :class:`~prometheus_client.CollectorRegistry`
(:func:`registry_for`), never the process-global one, so several runtimes
(tests, a scenario batch) can coexist in one process.

Metric names are fixed by the operations issue and the Grafana dashboard in
``docs/grafana/tradewarden.json``. Encodings:

* ``breaker_state``: 0 closed, 1 half-open, 2 open.
* ``killswitch_state``: 1 when the coordinator's trading state is HALTED
  (kill switch on or runtime halt), else 0; ``trading_state{state}`` is 1
  for the current state (ACTIVE, REDUCING, HALTED).
* ``tick_to_order_seconds``: what the symbol actors measure (tick received by
  the symbol actor -> Signal handed to the coordinator), i.e. the
  strategy part of the tick-to-order path; the gate and the broker round
  trip are not in it (``bench`` measures the whole path). Symbol actors keep
  the last 1,024 samples in a ring and publish the running count; the
  collector folds every sample it has not seen yet into a cumulative
  histogram. Samples that rolled out of the ring between two scrapes (more
  than 1,024 signals per symbol per scrape interval) are not counted.
* ``hedge_lag_seconds``: hedge request received -> hedge order accepted by
  the gate, from the hedger's lag samples (last 10,000); an empty histogram
  while there is no hedger or no hedge yet. Once the hedger's sample window
  is full, new samples can no longer be told apart and the histogram stops
  growing (10,000 emergency hedges in one run is far outside normal).
"""

from __future__ import annotations

import threading
from decimal import Decimal, InvalidOperation
from typing import Any
from collections.abc import Iterable, Iterator

from loguru import logger
from prometheus_client import CollectorRegistry
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    Metric)

from runtime.introspection import info_of

TICK_TO_ORDER_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                         0.05, 0.1, 0.25, 0.5, 1.0)
HEDGE_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BREAKER_CODES = {"closed": 0, "half_open": 1, "open": 2}
TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")


def system_of(target: Any) -> Any:
    """The ActorSystem behind a Runtime, a VirtualHarness or a system itself (or None)."""
    if hasattr(target, "directory") and hasattr(target, "dead_letters"):
        return target
    return getattr(target, "system", None)


def number(value: Any, default: float = 0.0) -> float:
    """A published figure (int, float, Decimal or decimal string) as a float."""
    if value is None:
        return default
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return default


class _Histogram:
    """A cumulative histogram fed with samples the collector has not seen yet."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def add(self, samples: Iterable[float]) -> None:
        for v in samples:
            self.count += 1
            self.sum += v
            for i, bound in enumerate(self.bounds):
                if v <= bound:
                    self.counts[i] += 1
                    break

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append((_le(bound), running))
        out.append(("+Inf", self.count))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


class RuntimeCollector:
    """Reads one runtime's figures on each scrape (thread-safe: scrapes may overlap)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._tick = _Histogram(TICK_TO_ORDER_BUCKETS)
        self._hedge = _Histogram(HEDGE_LAG_BUCKETS)
        #: (cell name, incarnation) -> samples already folded in
        self._seen: dict[tuple[str, int], int] = {}

    def collect(self) -> Iterator[Metric]:
        system = system_of(self.target)
        with self._lock:
            if system is not None:
                self._fold_latencies(system)
            yield from self._connectivity(system)
            yield from self._risk(system)
            yield from self._actors(system)
            yield self._histogram("tick_to_order_seconds",
                                  "Tick received by a symbol actor -> signal handed to the "
                                  "coordinator (seconds)", self._tick)
            yield self._histogram("hedge_lag_seconds",
                                  "Hedge request -> hedge order accepted by the gate (seconds)",
                                  self._hedge)

    # -- groups -----------------------------------------------------------------------

    def _connectivity(self, system: Any) -> Iterator[Metric]:
        gw = info_of(system, "gateway")
        connected = GaugeMetricFamily("ws_connected", "1 when the exchange stream is connected")
        connected.add_metric([], 1.0 if gw.get("connected") else 0.0)
        yield connected
        age = GaugeMetricFamily("ws_last_msg_age_seconds",
                                "Seconds since the last message from the exchange stream")
        age.add_metric([], self._last_msg_age(system, gw))
        yield age
        attempts = CounterMetricFamily("ws_reconnect_attempts",
                                       "Connection attempts made by the gateway")
        counts = gw.get("counts") or {}
        if "connect_attempts" in counts:
            n = counts["connect_attempts"]
        else:
            n = info_of(system, "reconnect").get("reconnect_attempts_total", 0)
        attempts.add_metric([], number(n))
        yield attempts

    @staticmethod
    def _last_msg_age(system: Any, gw: dict[str, Any]) -> float:
        # The gateway publishes the age when it handles a message; on a silent
        # stream that figure stops moving, so compute it now when we can.
        cell = system.directory.get("gateway") if system is not None else None
        actor = getattr(cell, "actor", None)
        last = getattr(actor, "last_msg_at", None)
        if isinstance(last, (int, float)) and last > 0:
            now: float = system.clock.monotonic()
            return max(0.0, now - float(last))
        return number(gw.get("last_msg_age_s"))

    def _risk(self, system: Any) -> Iterator[Metric]:
        c = info_of(system, "coordinator")
        counts = c.get("counts") or {}
        breaker = GaugeMetricFamily("breaker_state",
                                    "Circuit breaker: 0 closed, 1 half-open, 2 open")
        breaker.add_metric([], float(BREAKER_CODES.get(str(c.get("breaker", "closed")), 0)))
        yield breaker
        yield _counter("breaker_open", "Times the circuit breaker opened",
                       c.get("breaker_open_total", 0))
        rejects = CounterMetricFamily("trade_rejects", "Risk gate rejections by reason",
                                      labels=["reason"])
        for reason, n in sorted((c.get("rejected") or {}).items()):
            rejects.add_metric([str(reason)], number(n))
        yield rejects
        yield _counter("orders_blocked_by_invariant",
                       "Orders the netting invariant blocked before they reached the broker",
                       counts.get("blocked_by_invariant", 0))
        state = str(c.get("trading_state", "ACTIVE"))
        halted = (system is not None and system.halted) or state == "HALTED"
        kill = GaugeMetricFamily("killswitch_state", "1 when the kill switch is on (HALTED)")
        kill.add_metric([], 1.0 if halted else 0.0)
        yield kill
        ts = GaugeMetricFamily("trading_state", "1 for the coordinator's current trading state",
                               labels=["state"])
        for s in TRADING_STATES:
            ts.add_metric([s], 1.0 if s == state else 0.0)
        yield ts
        pnl = GaugeMetricFamily("daily_pnl", "Today's PnL (realized + unrealized)")
        pnl.add_metric([], number(c.get("daily_pnl")))
        yield pnl
        loss = GaugeMetricFamily("max_daily_loss", "Configured daily loss limit")
        loss.add_metric([], number(c.get("max_daily_loss")))
        yield loss
        yield _counter("reconciliation_divergences",
                       "Position divergences found by reconciliation (the broker won)",
                       counts.get("divergences", 0))

    def _actors(self, system: Any) -> Iterator[Metric]:
        depth = GaugeMetricFamily("actor_mailbox_depth", "Messages waiting", labels=["actor"])
        processed = CounterMetricFamily("actor_messages", "Messages handled", labels=["actor"])
        restarts = CounterMetricFamily("actor_restarts", "Restarts by the supervisor",
                                       labels=["actor"])
        cells = system.directory.cells() if system is not None else []
        for cell in cells:
            depth.add_metric([cell.name], float(cell.mailbox.depth))
            processed.add_metric([cell.name], float(cell.mailbox.processed))
            restarts.add_metric([cell.name], float(cell.restarts))
        yield depth
        yield processed
        yield restarts
        dead = CounterMetricFamily("dead_letters", "Messages that could not be delivered")
        dead.add_metric([], float(system.dead_letters.total) if system is not None else 0.0)
        yield dead
        halted = GaugeMetricFamily("runtime_halted", "1 after the root supervisor failed")
        halted.add_metric([], 1.0 if system is not None and system.halted else 0.0)
        yield halted

    # -- histograms ---------------------------------------------------------------------

    @staticmethod
    def _histogram(name: str, doc: str, h: _Histogram) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc)
        fam.add_metric([], h.buckets(), h.sum)
        return fam

    def _fold_latencies(self, system: Any) -> None:
        for cell in system.directory.cells():
            try:
                if cell.name.startswith("symbol-"):
                    self._fold_symbol(cell)
                elif cell.name == "hedger":
                    self._fold_hedger(cell)
            except Exception as exc:  # noqa: BLE001 - a scrape never fails on one actor
                logger.debug("metrics: cannot read latency samples of {}: {}", cell.name, exc)

    def _fold_symbol(self, cell: Any) -> None:
        actor = cell.actor
        lat = (cell.info or {}).get("signal_latency_us") or {}
        n = int(lat.get("n") or 0)
        read = getattr(actor, "signal_latencies_us", None)
        if not n or read is None:
            return
        key = (cell.name, cell.incarnation)
        seen = self._seen.get(key, 0)
        if n <= seen:
            return
        ring = read()
        size = len(ring)
        if size == 0:
            return
        first = max(seen, n - size)
        self._tick.add(float(ring[i % size]) / 1e6 for i in range(first, n))
        self._seen[key] = n

    def _fold_hedger(self, cell: Any) -> None:
        lags = getattr(cell.actor, "lags_ms", None)  # a runtime.rolling.RollingSample
        if lags is None:
            return
        snap = lags.snapshot()  # consistent although the actor thread may be adding
        if snap is None:
            return  # busy: fold at the next scrape
        n, samples = snap
        key = (cell.name, cell.incarnation)
        seen = self._seen.get(key, 0)
        new = min(n - seen, len(samples))
        if new > 0:
            self._hedge.add(float(v) / 1000.0 for v in samples[len(samples) - new:])
        self._seen[key] = n


def _counter(name: str, doc: str, value: Any) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc)
    fam.add_metric([], number(value))
    return fam


def registry_for(target: Any) -> CollectorRegistry:
    """A fresh registry holding only this runtime's collector (no global state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(target))
    return registry


#: every metric family the collector emits (the tests and the dashboard use this list)
METRIC_NAMES = (
    "ws_connected", "ws_last_msg_age_seconds", "ws_reconnect_attempts_total", "breaker_state",
    "breaker_open_total", "trade_rejects_total", "orders_blocked_by_invariant_total",
    "killswitch_state", "daily_pnl", "max_daily_loss", "actor_mailbox_depth",
    "actor_messages_total", "actor_restarts_total", "tick_to_order_seconds",
    "hedge_lag_seconds", "reconciliation_divergences_total",
)
