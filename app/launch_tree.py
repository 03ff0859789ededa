"""The root supervisor's child specs: DESIGN section 2's actor tree as data.

:func:`root_tree` turns a :class:`~app.launcher.LaunchSpec` and the handles
the runtime has opened (store, exchange engine, broker adapter factory) into
the root ``SupervisorSpec``; it starts nothing. The children's order is the
start order; they stop in reverse, so the market stops first and persistence
drains last (rule 16). ``app.launcher`` draws the tree and says why each
child sits where it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runtime.backoff import Backoff
from runtime.supervisor import ChildSpec, SupervisorSpec

if TYPE_CHECKING:
    from app.launcher import LaunchSpec

ROOT = "root"


def backoff_of(section: Any) -> Backoff:
    """The runtime's Backoff from a validated config backoff section."""
    return Backoff(section.base_s, section.max_s, section.jitter)


def root_tree(spec: LaunchSpec, *, store: Any, engine: Any, adapter_factory: Any,
              account: str, bounds: Any, external: bool,
              demo_symbols: Sequence[str]) -> SupervisorSpec:
    """The root supervisor of one account's runtime. ``external``: the exchange
    lives outside this process (no ``venue`` child, no demo drills);
    ``demo_symbols``: symbols only the demo group driver trades (no strategy)."""
    from app.alert_sinks import sinks_from_config
    from actors.alerts import AlertsActor
    from actors.coordinator import Coordinator
    from actors.gateway import Gateway
    from actors.group_supervisor import groups_child
    from actors.hedger import Hedger
    from actors.order_group import GroupSettings
    from actors.persistence import PersistenceActor
    from actors.reconciler import Reconciler
    from actors.reconnect import ReconnectController
    from actors.stops import StopLossManager
    from actors.symbol import symbols_supervisor
    from trading.limits import Limits
    from trading.order_retention import Retention

    cfg = spec.config
    sup = cfg.runtime.supervisor
    pcfg = cfg.runtime.persistence
    gw = cfg.gateway
    #: the coordinator's window for ended orders, which the hedger's follows
    retention = Retention(cfg.runtime.retention.ended_orders, cfg.runtime.retention.ended_order_s)
    quiet = list(demo_symbols)
    children: list[Any] = [
        ChildSpec("persistence", PersistenceActor,
                  kwargs={"store": store, "max_batch": pcfg.group_commit_max_batch,
                          "max_delay_s": max(pcfg.group_commit_window_ms, 1) / 1000,
                          "linger_s": pcfg.unacked_linger_ms / 1000,
                          "audit_sync_every": pcfg.audit_sync_every},
                  shutdown_s=cfg.runtime.shutdown_timeout_s),
        ChildSpec("alerts", AlertsActor, args=(sinks_from_config(cfg.alerts.sink_entries()),),
                  kwargs={"max_pending": cfg.alerts.max_pending,
                          "backoff": backoff_of(cfg.alerts.retry),
                          "ready_poll_s": cfg.alerts.ready_poll_s,
                          "dedup_window_s": cfg.alerts.dedup_window_s,
                          "batch": cfg.alerts.batch}),
    ]
    if not external:
        from actors.sim_venue import SimVenue

        children.append(ChildSpec("venue", SimVenue, args=(engine,),
                                  kwargs={"events_path": spec.run_dir / "events.jsonl",
                                          "auto_connect": False}))
    children += [
        ChildSpec("gateway", Gateway, market_lane=True,
                  kwargs={"adapter_factory": adapter_factory,
                          "quote_listeners": ("stops",), "connect_on_start": False,
                          "watchdog_timeout_s": gw.watchdog.timeout_s,
                          "accounts": (account,), "bounds": bounds}),
        ChildSpec("reconnect", ReconnectController,
                  kwargs={"backoff": backoff_of(gw.reconnect),
                          "budget": gw.budget.attempts, "window_s": gw.budget.window_s}),
        ChildSpec("reconciler", Reconciler,
                  kwargs={"poll_s": cfg.reconciler.poll_s, "accounts": (account,),
                          "round_timeout_s": cfg.reconciler.startup_timeout_s}),
        ChildSpec("coordinator", Coordinator, conflate=True, market_lane=True,
                  kwargs={"limits": Limits.from_config(
                              cfg.risk, account_equity=cfg.exchange.starting_cash,
                              instrument_rules=spec.instrument_rules),
                          "symbols": list(spec.symbols), "venue": cfg.exchange.venue,
                          "stops": "stops", "bounds": bounds,
                          "retention": retention}),
        # rule 6: DESIGN draws group-<id> under the coordinator; their supervisor
        # sits right after it (started after, stopped before the single door)
        groups_child(GroupSettings.from_config(cfg.groups), account=account,
                     intensity=sup.intensity, period_s=sup.period_s),
        # rules 7 and 8: both order only through the coordinator
        ChildSpec("hedger", Hedger, kwargs={"debounce_ms": cfg.hedger.debounce_ms,
                                            "retention": retention}),
        ChildSpec("stops", StopLossManager, conflate=True, market_lane=True,
                  kwargs={"slippage_bps": cfg.stops.slippage_bps,
                          "fallback_after_s": cfg.stops.fallback_after_s,
                          "cancel_wait_alert_s": cfg.stops.cancel_wait_alert_s,
                          "settings": cfg.stops.exit_settings()}),
        symbols_supervisor([s for s in spec.symbols if s not in quiet],
                           cfg.strategy.name, cfg.strategy.params,
                           account=account, intensity=sup.intensity,
                           period_s=sup.period_s, quiet_symbols=quiet,
                           features_on=cfg.strategy.features,
                           execution=("remote" if cfg.runtime.placement.symbols != "local"
                                      else None)),
    ]
    if spec.market is not None:
        from actors.market_feed import MarketFeed

        children.append(ChildSpec("market", MarketFeed, args=(spec.market,),
                                  kwargs={"duration_s": spec.market_duration_s}))
    if spec.demo_groups is not None and not external:
        from actors.demo_groups import NAME as DEMO, DemoGroups, DemoSettings

        # last: started once everything it drives is up, stopped first
        children.append(ChildSpec(DEMO, DemoGroups, kwargs={
            "settings": DemoSettings.from_config(spec.demo_groups,
                                                 GroupSettings.from_config(cfg.groups)),
            "seed": spec.seed, "account": account,
            "duration_s": spec.market_duration_s}))
    return SupervisorSpec(ROOT, children, strategy="one_for_one", intensity=sup.intensity,
                          period_s=sup.period_s,
                          backoff=backoff_of(cfg.runtime.restart_backoff))
