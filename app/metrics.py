"""Prometheus metrics, read from the runtime's published figures at scrape time.

Why a custom collector instead of counters in the code: the actors already
publish their figures (``cell.info``, the mailbox figures) for introspection,
so the metrics are a second view of the same numbers. Nothing is
instrumented inside a hot path, a scrape costs nothing while nobody scrapes,
and ``/metrics`` can never disagree with ``/actors``.

Each runtime gets its own :class:`~prometheus_client.CollectorRegistry`
(:func:`registry_for`), never the process-global one, so several runtimes
(tests, a scenario batch) can coexist in one process. The registry also
holds the standard ``process_*`` and ``python_*`` collectors.

Every name the collector emits starts with ``tradewarden_`` (DESIGN section
8); the Grafana dashboard (``docs/grafana/tradewarden.json``) and the alert
rules (``docs/prometheus/``) use them. Label sets are bounded: ``symbol`` by
the configured symbols, ``reason`` and ``state`` by their enums, ``actor``
by the actor tree with every ``group-<id>`` actor folded into one
``group-*`` series (a run may start thousands of groups). Money carries a
``currency`` label (the exchange's quote currency). Encodings:

* ``breaker_state``: 0 closed, 1 half-open, 2 open.
* ``kill_switch_engaged``: 1 when the coordinator's trading state is HALTED
  (kill switch on or runtime halt), else 0; ``trading_state{state}`` is 1
  for the current state (``trading.trading_state.TradingState``: ACTIVE, HALTED).
* ``exchange_*``: the exchange stream whatever carries it; ``ws_*`` only when
  a WebSocket transport exists (``run --exchange ws://...``).
* ``tick_to_signal_seconds``: what the symbol actors measure (tick received
  by the symbol actor -> Signal handed to the coordinator), i.e. the
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
from collections.abc import Iterable, Iterator
from typing import Any

from loguru import logger
from prometheus_client import CollectorRegistry
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    Metric)

from runtime.introspection import info_of
from trading.trading_state import TradingState

#: every metric name starts with this (DESIGN section 8)
P = "tradewarden_"
#: group-<id> actors, folded into one ``actor`` label value
GROUP_PREFIX, GROUP_LABEL = "group-", "group-*"
MAX_GROUPS_SEEN = 10_000
TICK_TO_SIGNAL_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                         0.05, 0.1, 0.25, 0.5, 1.0)
HEDGE_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BREAKER_CODES = {"closed": 0, "half_open": 1, "open": 2}
TRADING_STATES = tuple(s.value for s in TradingState)


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
        self._tick = _Histogram(TICK_TO_SIGNAL_BUCKETS)
        self._hedge = _Histogram(HEDGE_LAG_BUCKETS)
        #: (cell name, incarnation) -> samples already folded in
        self._seen: dict[tuple[str, int], int] = {}
        #: group actors come and go: their messages and restarts are kept as running
        #: totals so the folded ``group-*`` counters never go down
        self._group_seen: dict[str, tuple[int, int]] = {}
        self._group_totals = [0, 0]

    @property
    def currency(self) -> str:
        cfg = getattr(self.target, "config", None)
        return str(getattr(getattr(cfg, "exchange", None), "quote_currency", None) or "unknown")

    @property
    def ws_transport(self) -> bool:
        url = getattr(getattr(self.target, "spec", None), "exchange_url", None)
        return isinstance(url, str) and url.startswith(("ws://", "wss://"))

    def collect(self) -> Iterator[Metric]:
        system = system_of(self.target)
        with self._lock:
            if system is not None:
                self._fold_latencies(system)
            yield from self._connectivity(system)
            yield from self._risk(system)
            yield from self._trading(system)
            yield from self._actors(system)
            yield self._untrusted(system)
            yield self._histogram("tick_to_signal_seconds",
                                  "Tick received by a symbol actor -> signal handed to the "
                                  "coordinator (seconds)", self._tick)
            yield self._histogram("hedge_lag_seconds",
                                  "Hedge request -> hedge order accepted by the gate (seconds)",
                                  self._hedge)

    # -- groups -----------------------------------------------------------------------

    def _connectivity(self, system: Any) -> Iterator[Metric]:
        gw = info_of(system, "gateway")
        yield _gauge("exchange_connected", "1 when the exchange stream is connected",
                     1.0 if gw.get("connected") else 0.0)
        yield _gauge("exchange_reconciling",
                     "1 while the stream reconciles after a (re)connect (no new risk)",
                     1.0 if gw.get("stream_reconciling") else 0.0)
        yield _gauge("exchange_last_msg_age_seconds",
                     "Seconds since the last message from the exchange stream",
                     self._last_msg_age(system, gw))
        counts = gw.get("counts") or {}
        if "connect_attempts" in counts:
            n = counts["connect_attempts"]
        else:
            n = info_of(system, "reconnect").get("reconnect_attempts_total", 0)
        yield _counter("exchange_connect_attempts", "Connection attempts made by the gateway", n)
        if self.ws_transport:  # a socket exists: its own failure modes
            yield _counter("ws_bad_frames", "WebSocket frames that could not be decoded",
                           gw.get("bad_frames", 0))

    @staticmethod
    def _last_msg_age(system: Any, gw: dict[str, Any]) -> float:
        # The gateway publishes the age when it handles a message; on a silent
        # stream that figure stops moving, so compute it now when we can.
        cell = system.directory.get("gateway") if system is not None else None
        actor = getattr(cell, "actor", None)
        last = getattr(actor, "last_msg_at", None)
        if isinstance(last, (int, float)) and last > 0:
            return max(0.0, float(system.clock.monotonic()) - float(last))
        return number(gw.get("last_msg_age_s"))

    def _risk(self, system: Any) -> Iterator[Metric]:
        c = info_of(system, "coordinator")
        counts = c.get("counts") or {}
        yield _gauge("breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
                     float(BREAKER_CODES.get(str(c.get("breaker", "closed")), 0)))
        yield _counter("breaker_open", "Times the circuit breaker opened",
                       c.get("breaker_open_total", 0))
        rejects = CounterMetricFamily(P + "trade_rejects", "Risk gate rejections by reason "
                                      "(netting_conflict: the netting invariant blocked it)",
                                      labels=["reason"])
        for reason, n in sorted((c.get("rejected") or {}).items()):
            rejects.add_metric([str(reason)], number(n))
        yield rejects
        state = str(c.get("trading_state", "ACTIVE"))
        halted = (system is not None and system.halted) or state == "HALTED"
        yield _gauge("kill_switch_engaged", "1 when trading is halted (kill switch or runtime "
                                            "halt)", 1.0 if halted else 0.0)
        yield _counter("kill_switch_trips", "Times the kill switch engaged",
                       counts.get("kill_switch_trips", 0))
        ts = GaugeMetricFamily(P + "trading_state", "1 for the coordinator's current trading "
                                                    "state", labels=["state"])
        for st in TRADING_STATES:
            ts.add_metric([st], 1.0 if st == state else 0.0)
        yield ts
        yield _gauge("recovering", "1 while startup recovery runs (no new risk)",
                     1.0 if c.get("recovering") else 0.0)
        yield _counter("reconciliation_divergences",
                       "Position divergences found by reconciliation (the broker won)",
                       counts.get("divergences", 0))

    def _trading(self, system: Any) -> Iterator[Metric]:
        c = info_of(system, "coordinator")
        cur = self.currency
        daily = GaugeMetricFamily(P + "daily_pnl", "Today's PnL (realized + unrealized)",
                                  labels=["currency"])
        daily.add_metric([cur], number(c.get("daily_pnl")))
        yield daily
        limit = GaugeMetricFamily(P + "max_daily_loss", "Configured daily loss limit",
                                  labels=["currency"])
        limit.add_metric([cur], number(c.get("max_daily_loss")))
        yield limit
        orders = GaugeMetricFamily(P + "orders", "Orders of this run by current status",
                                   labels=["status"])
        for status, n in sorted((c.get("orders_by_status") or {}).items()):
            orders.add_metric([str(status)], number(n))
        yield orders
        by = c.get("by_symbol") or {}
        per_symbol = (
            (CounterMetricFamily(P + "orders_submitted", "Orders sent to the exchange",
                                 labels=["symbol"]), by.get("submitted"), ()),
            (CounterMetricFamily(P + "fills", "Fills booked", labels=["symbol"]),
             by.get("fills"), ()),
            (GaugeMetricFamily(P + "realized_pnl", "Realized PnL", labels=["symbol", "currency"]),
             by.get("realized"), (cur,)),
            (GaugeMetricFamily(P + "unrealized_pnl", "Unrealized PnL at the mid",
                               labels=["symbol", "currency"]), by.get("unrealized"), (cur,)),
            (GaugeMetricFamily(P + "position", "Net position (instrument units)",
                               labels=["symbol"]), c.get("positions"), ()),
        )
        for fam, values, extra in per_symbol:
            for sym, v in sorted((values or {}).items()):
                fam.add_metric([str(sym), *extra], number(v))
            yield fam

    @staticmethod
    def _untrusted(system: Any) -> Metric:
        """Rule 18: inputs from outside refused where they entered, by actor,
        verdict (rejected: wrong; ignored: not ours) and reason (bounded codes)."""
        fam = CounterMetricFamily(P + "untrusted_inputs", "Inputs from outside refused (rule 18)",
                                  labels=["actor", "verdict", "reason"])
        for actor in ("gateway", "reconciler", "coordinator"):
            info = info_of(system, actor)
            for verdict, reasons in sorted((info.get("trust") or {}).items()):
                for reason, n in sorted((reasons or {}).items()):
                    fam.add_metric([actor, str(verdict), str(reason)], number(n))
        return fam

    def _actors(self, system: Any) -> Iterator[Metric]:
        depth = GaugeMetricFamily(P + "actor_mailbox_depth", "Messages waiting",
                                  labels=["actor"])
        processed = CounterMetricFamily(P + "actor_messages", "Messages handled",
                                        labels=["actor"])
        restarts = CounterMetricFamily(P + "actor_restarts", "Restarts by the supervisor",
                                       labels=["actor"])
        cells = system.directory.cells() if system is not None else []
        group_depth = 0
        for cell in cells:
            if cell.name.startswith(GROUP_PREFIX):
                group_depth += cell.mailbox.depth
                self._fold_group(cell.name, cell.mailbox.processed, cell.restarts)
                continue
            depth.add_metric([cell.name], float(cell.mailbox.depth))
            processed.add_metric([cell.name], float(cell.mailbox.processed))
            restarts.add_metric([cell.name], float(cell.restarts))
        depth.add_metric([GROUP_LABEL], float(group_depth))
        processed.add_metric([GROUP_LABEL], float(self._group_totals[0]))
        restarts.add_metric([GROUP_LABEL], float(self._group_totals[1]))
        yield depth
        yield processed
        yield restarts
        yield _counter("dead_letters", "Messages that could not be delivered",
                       system.dead_letters.total if system is not None else 0)
        yield _gauge("runtime_halted", "1 after the root supervisor failed",
                     1.0 if system is not None and system.halted else 0.0)

    def _fold_group(self, name: str, processed: int, restarts: int) -> None:
        seen_p, seen_r = self._group_seen.get(name, (0, 0))
        self._group_totals[0] += max(0, processed - seen_p)
        self._group_totals[1] += max(0, restarts - seen_r)
        self._group_seen[name] = (max(processed, seen_p), max(restarts, seen_r))
        if len(self._group_seen) > 4 * MAX_GROUPS_SEEN:  # forget the long-gone ones
            for old in list(self._group_seen)[:MAX_GROUPS_SEEN]:
                del self._group_seen[old]

    # -- histograms ---------------------------------------------------------------------

    @staticmethod
    def _histogram(name: str, doc: str, h: _Histogram) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(P + name, doc)
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
    fam = CounterMetricFamily(P + name, doc)
    fam.add_metric([], number(value))
    return fam


def _gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(P + name, doc)
    fam.add_metric([], number(value))
    return fam


def registry_for(target: Any) -> CollectorRegistry:
    """A fresh registry with this runtime's collector and the standard process and
    Python collectors (no global state)."""
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(target))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


#: every metric family the collector emits, as exposed (the tests, the dashboard and the
#: alert rules use these); ``ws_bad_frames_total`` only with a WebSocket transport
METRIC_NAMES = tuple(P + n for n in (
    "exchange_connected", "exchange_reconciling", "exchange_last_msg_age_seconds",
    "exchange_connect_attempts_total", "breaker_state", "breaker_open_total",
    "trade_rejects_total", "kill_switch_engaged", "kill_switch_trips_total", "trading_state",
    "recovering", "reconciliation_divergences_total", "daily_pnl", "max_daily_loss", "orders",
    "orders_submitted_total", "fills_total", "realized_pnl", "unrealized_pnl", "position",
    "actor_mailbox_depth", "actor_messages_total", "actor_restarts_total", "dead_letters_total",
    "runtime_halted", "tick_to_signal_seconds", "hedge_lag_seconds",
))
WS_METRIC_NAMES = (P + "ws_bad_frames_total",)
