"""The launcher: builds DESIGN section 2's actor tree for one account and starts it.

``run``, ``scenario`` and the tests all start Tradewarden through
:class:`Runtime`, so there is one wiring of the tree, not three. The tree::

    root (one_for_one)
    ├── persistence    single LMDB writer; started first, stopped last
    ├── alerts         log / webhook / telegram sinks
    ├── venue          the in-process simulated exchange (absent with --exchange ws://)
    ├── gateway        broker adapter + watchdog
    ├── reconnect      reconnect controller of the gateway (rule 12)
    ├── reconciler     startup recovery, resync, 12 s poll
    ├── coordinator    the only door to the broker's order API
    ├── groups         one_for_one supervisor of group-<id> (rule 6; transient children)
    ├── hedger         emergency hedges, debounced, delta-only (rule 7)
    ├── stops          stop-loss manager (rule 8); gets quotes from the gateway
    ├── symbols        one_for_one supervisor of symbol-<SYM>
    ├── market         synthetic market feed into the venue (``run`` only)
    └── demo-groups    order-group drills on their own pair (``run`` with the
                       embedded exchange and ``demo.groups.enabled``; see
                       ``actors.demo_groups``)

DESIGN draws the reconnect controller inside the gateway box; it is a
sibling here so a gateway crash never loses the backoff state and budget.
Children start in this order and stop in reverse, so the market stops
first and persistence drains last (rule 16). ``app.launch_tree`` builds
the child specs; ``app.broker_adapters`` picks how the gateway (and the
end-of-run positions check) reaches the exchange.

Services shared by name through ``system.services`` (read-only handles, no
shared mutable state between actors): ``store`` (LMDB, read side),
``audit`` (the coordinator's audit trail), ``ids`` (client order ids from
durably reserved blocks, prefixed with the store's id so ids from two stores
never collide at a long-lived exchange).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from config.schema import Config
from app.broker_adapters import gateway_adapter_factory, positions_adapter_factory
from app.launch_tree import root_tree
from runtime.clock import Clock
from runtime.supervisor import SupervisorSpec
from runtime.system import ActorSystem


def app_version() -> str:
    try:
        from importlib.metadata import version

        return version("tradewarden")
    except Exception:  # noqa: BLE001 - running from a plain checkout
        return "0+unknown"


@dataclass
class LaunchSpec:
    """Everything one runtime needs; built by ``run``, ``scenario`` or a test."""

    config: Config
    run_dir: Path
    symbols: tuple[str, ...]
    clock: Clock
    run_id: str
    config_hash: str
    seed: int = 0
    #: None: the in-process simulated exchange; ws://host:port: a WebSocket exchange
    exchange_url: str | None = None
    #: scenario ``exchange:`` block (settings and faults) for the in-process venue
    exchange_spec: dict[str, Any] = field(default_factory=dict)
    #: a synthetic market to feed the venue; None when the caller injects market data
    market: Any = None
    market_duration_s: float | None = None
    #: keep the exchange engine across a runtime restart (scenario crash/restart)
    engine: Any = None
    #: the ``demo.groups`` config section when ``run`` starts the demo group driver
    #: (its symbols are in ``symbols`` too, with no strategy on them); see :func:`demo_plan`
    demo_groups: Any = None
    #: a real venue (``run --venue``): its resolved settings (secrets inside;
    #: never logged) for the ccxt adapter; None: the simulated exchange
    venue: Any = None
    #: the venue's instrument rules as data, ``{symbol: {rule: value}}``, loaded
    #: from its markets at start (trading.venue_rules); empty: none
    instrument_rules: dict[str, dict[str, str]] = field(default_factory=dict)
    #: where remote symbol actors run (runtime.remote_placement.Placement), kept by the caller
    #: across lives; None: made from ``runtime.placement`` and closed with the runtime
    placement: Any = None
    #: a scenario through a venue on loopback (exchange.virtual_wire): the ledger of
    #: work on the wire, bound to this life's quiescence, and the venue's timers
    #: that virtual time fires with the system's own; None / (): not counted
    wire: Any = None
    timer_sources: tuple[Any, ...] = ()


def make_placement(cfg: Config) -> Any:
    """The placement ``runtime.placement.symbols`` asks for (None: all local)."""
    pl = cfg.runtime.placement
    if pl.symbols == "thread":
        from runtime.remote_placement import ThreadPlacement

        return ThreadPlacement()
    if pl.symbols == "ray":
        from runtime.ray_placement import RayPlacement

        return RayPlacement(pl.ray_address, processes=pl.ray_processes, num_cpus=pl.ray_num_cpus)
    return None


def demo_plan(cfg: Config) -> tuple[tuple[str, ...], Any]:
    """``run``'s symbols (the market's plus the demo pair's) and its ``demo.groups``
    section, or None: the driver needs the embedded exchange (its drills are
    that exchange's fault injection) and a market ``run`` feeds itself."""
    symbols = tuple(cfg.market.symbols)
    demo = cfg.demo.groups
    if not demo.enabled or cfg.exchange.url is not None:
        return symbols, None
    return symbols + tuple(s for s in demo.symbols if s not in symbols), demo


def new_engine(cfg: Config, exchange_spec: dict[str, Any] | None, clock: Clock,
               bounds: Any) -> Any:
    """The simulated exchange engine of a run: the config's settings with the
    scenario ``exchange:`` block's settings over them (its faults are applied
    by whoever serves the engine), on ``clock``."""
    from config.sim_exchange import SimSettings, split_spec
    from exchange.engine import SimulatedExchange

    settings = dict(cfg.exchange.sim_settings())
    over, _faults = split_spec(exchange_spec or {})
    settings.update(over)
    engine = SimulatedExchange(SimSettings.from_spec(settings), clock=clock.now)
    engine.bounds = bounds
    return engine


class Runtime:
    """One account's runtime: store, services, actor system and exchange engine."""

    def __init__(self, spec: LaunchSpec) -> None:
        self.spec = spec
        self.config = spec.config
        self.account = spec.config.exchange.account
        self.engine = spec.engine if not self.external else None
        self.store: Any = None
        self.audit: Any = None
        self.placement: Any = None
        self._own_placement = False
        self.system: ActorSystem | None = None
        self.store_id: str | None = None
        from messages.bounds import bounds_from_config

        #: rule 18: the sane range of every number from outside (gateway, gate, venue)
        self.bounds = bounds_from_config(spec.config.bounds)

    def require_system(self) -> ActorSystem:
        """The actor system of a started runtime (a clear error before ``start``)."""
        if self.system is None:
            raise RuntimeError("the runtime has not been started")
        return self.system

    # -- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Runtime:
        from trading.id_allocator import IdAllocator
        from trading.store import Store
        from trading.audit import AuditLog

        spec, cfg = self.spec, self.config
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(spec.run_dir, map_size=cfg.runtime.persistence.map_size_mb << 20)
        (spec.run_dir / "audit.jsonl").touch()  # present even if nothing is decided
        self.audit = AuditLog(spec.run_dir / "audit.jsonl", run_id=spec.run_id,
                              app_version=app_version(), config_hash=spec.config_hash)
        placement = self.placement = spec.placement or make_placement(cfg)
        self._own_placement = spec.placement is None
        system = self.system = ActorSystem(
            clock=spec.clock, executor_workers=cfg.runtime.executor_workers, seed=spec.seed,
            placement=placement,
            dispatcher_threads=cfg.runtime.dispatcher_threads,
            throughput=cfg.runtime.throughput,
            slow_handler_s=cfg.runtime.slow_handler_ms / 1000.0,
            name=f"tradewarden-{spec.run_id}",
            services={"store": self.store, "audit": self.audit, "run_dir": spec.run_dir})
        system.placement_watchers = ("coordinator",)  # fails closed for a symbol whose actor is away
        if spec.wire is not None:
            spec.wire.bind(system.outstanding_add)
        system.timer_sources.extend(spec.timer_sources)
        # the reservations' replies go to the coordinator, which hands them over
        system.services["ids"] = IdAllocator.via_actor(system.tell, "client_order_id",
                                                       reply_to="coordinator", block=256)
        if self.engine is None and not self.external:
            self.engine = self._new_engine()
        system.on_halt(self._on_halt)
        system.start(self.tree(), timeout=timeout)
        self._init_ids(timeout)
        self._apply_exchange_faults()
        from messages.connectivity import ReconnectNow
        from messages.exchange import Subscribe

        system.tell("gateway", Subscribe(tuple(spec.symbols)))
        system.tell("gateway", ReconnectNow(0))
        if system.clock.is_virtual:
            system.wait_quiescent(timeout)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the tree in reverse order (persistence last), then close files."""
        timeout = timeout or self.config.runtime.shutdown_timeout_s
        if self.system is not None:
            self.system.shutdown(timeout)
        if self.audit is not None:
            try:
                self.audit.close()
            except OSError as exc:  # a full disk; the halt has said so already
                logger.error("could not close audit.jsonl: {}", exc)
        if self.store is not None:
            self.store.close()
            self.store = None
        placement, self.placement = self.placement, None
        if placement is not None and self._own_placement:
            placement.close()

    def kill(self) -> None:
        """Die (almost) as if the process were killed: every waiting message
        in every mailbox is dropped, nothing is drained or reconciled. The
        actors' stop hooks still run, so a write already in the persistence
        actor's buffer is committed; the real SIGKILL case (a lost buffer)
        is covered by the persistence tests. Used by the scenario ``crash``."""
        system = self.system
        if system is None:
            return
        for cell in system.directory.cells():
            cell.mailbox.drain()
        self.stop(timeout=10.0)

    # -- the tree -------------------------------------------------------------------

    def tree(self) -> SupervisorSpec:
        """The root supervisor's spec (``app.launch_tree``) over this runtime's handles."""
        return root_tree(self.spec, store=self.store, engine=self.engine,
                         adapter_factory=gateway_adapter_factory(self.spec, self.account,
                                                                 self.system),
                         account=self.account, bounds=self.bounds, external=self.external,
                         demo_symbols=self.demo_symbols)

    def _new_engine(self) -> Any:
        return new_engine(self.config, self.spec.exchange_spec, self.spec.clock, self.bounds)

    def _apply_exchange_faults(self) -> None:
        from config.sim_exchange import split_spec
        from messages.exchange import ExchangeFault

        if self.external or not self.spec.exchange_spec:
            return
        _settings, faults = split_spec(self.spec.exchange_spec)
        if faults:
            self.require_system().tell("venue", ExchangeFault(faults))

    def _init_ids(self, timeout: float) -> None:
        """Client order ids: ``<account>-<store id>-<n>``, the counter persisted (rule 15)."""
        from messages.persistence import Flush, Put, StoreDb

        system = self.require_system()
        store_id = self.store.get(StoreDb.META, "store_id")
        if store_id is None:
            store_id = uuid.uuid4().hex[:8]
            system.tell("persistence", Put(StoreDb.META, "store_id", store_id))
            # request/reply: the flush's answer says everything before it is durable
            result = system.ask("persistence", Flush(), timeout=timeout)
            if not result.ok:
                raise RuntimeError(f"could not persist the store id: {result.error}")
        self.store_id = store_id
        ids = system.services["ids"]
        ids.prefix = f"{self.account}-{store_id}-"
        ids.start(timeout)

    def _on_halt(self, reason: str) -> None:
        """The root failed: kill switch on, alert sent, state flushed (DESIGN
        section 2). The failed root has already stopped the tree, so
        ``app.halt`` does for each actor that no longer runs what its
        message would have done."""
        from app.halt import orderly_halt

        orderly_halt(self, reason)

    @property
    def demo_symbols(self) -> list[str]:
        """Symbols only the demo group driver trades (no strategy runs on them)."""
        demo = self.spec.demo_groups
        return list(demo.symbols) if demo is not None and not self.external else []

    # -- reading ----------------------------------------------------------------------

    def info(self, name: str) -> dict[str, Any]:
        from runtime.introspection import info_of

        return info_of(self.system, name)

    @property
    def external(self) -> bool:
        """The exchange lives outside this process (a WebSocket server or a real venue)."""
        return self.spec.exchange_url is not None or self.spec.venue is not None

    def exchange_positions(self) -> dict[str, Any]:
        """The exchange's positions now: the venue's (asked), the embedded engine's
        (read directly: tests); {} for a WebSocket exchange."""
        if self.spec.venue is not None:
            from exchange.ccxt_venue.start import venue_positions

            return dict(venue_positions(self.spec.venue))
        if self.engine is None:
            return {}
        return {sym: qty for sym, qty in self.engine.positions(self.account).items()}

    def positions_adapter(self) -> Any:
        """A factory ``sink -> broker adapter`` for a question to this runtime's
        exchange once the tree has stopped (``app.broker_adapters``); None:
        there is no exchange to ask."""
        return positions_adapter_factory(self.spec, self.account, self.engine)

    def query_exchange_positions(self, timeout_s: float = 5.0) -> tuple[dict[str, Any] | None,
                                                                       str | None]:
        """(positions, None), or (None, why they could not be read). Only once
        the tree has stopped: the embedded engine is read on this thread."""
        from exchange.position_probe import ProbeError, query_positions

        if self.system is not None and not self.system._shut:
            return None, "asked while the runtime was still running"
        factory = self.positions_adapter()
        if factory is None:
            return None, "no exchange to ask"
        try:
            return query_positions(factory, self.account, timeout_s), None
        except ProbeError as exc:
            return None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken venue never loses the summary
            return None, f"{type(exc).__name__}: {exc}"
