"""The validated configuration: one pydantic model per section of the YAML.

Every field has a safe default (fail closed) that ``config/default.yaml``
repeats verbatim; a test keeps the two equal. Checks that span fields are
model validators whose message starts with the key they blame
(``"max_s: ..."``), which the loader turns into a file:line for that key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from config.alerts import AlertsConfig
from config.bounds import BoundsConfig
from config.risk import Limits, RiskConfig, SymbolLimits
from config.types import (BackoffSection, Dec, EnvName, Fraction, Host, Ident, Jitter, NonNegDec,
                          NonNegFloat, NonNegInt, PosDec, PosFloat, PosInt, Port, Section, Symbol,
                          is_loopback, unique)
from config.venue import ExchangeConfig, VenueEntry, default_venues

__all__ = ["AlertsConfig", "Config", "ExchangeConfig", "Limits", "RiskConfig", "SymbolLimits"]


# -- runtime ----------------------------------------------------------------------


class SupervisorConfig(Section):
    """More than ``intensity`` restarts within ``period_s`` and a supervisor gives up."""

    intensity: NonNegInt = 5
    period_s: PosFloat = 60.0


class RestartBackoff(BackoffSection):
    """Delay before restarting a crashed actor (the BackoffSection defaults)."""


class PersistenceConfig(Section):
    #: at most this many queued writes go into one LMDB transaction
    group_commit_max_batch: PosInt = 512
    #: extra wait for more writes before committing (0: commit what is queued)
    group_commit_window_ms: NonNegInt = 0
    #: writes nobody waits for (actor state) wait up to this long for the next
    #: write before an idle commit, so a state write and the order intent that
    #: follows it share one fsync (0: commit at once)
    unacked_linger_ms: NonNegInt = 1
    map_size_mb: PosInt = 1024
    #: the audit file is fsynced (off the order path) every this many records;
    #: until then the store holds them, committed with the writes they precede
    audit_sync_every: PosInt = 4096


class PlacementConfig(Section):
    """Where actors run (DESIGN section 11). ``symbols``: ``local`` (pooled, in this
    process), ``ray`` (remote actors on a Ray cluster: ``run --ray ADDRESS``) or
    ``thread`` (remote actors hosted on threads of this process, every message
    through the codec: for tests and to measure the codec alone)."""

    symbols: Literal["local", "thread", "ray"] = "local"
    #: ``auto`` starts a local Ray instance on this machine; else a cluster address
    ray_address: str = "auto"
    #: Ray host processes the symbol actors are spread over (by a hash of the name)
    ray_processes: PosInt = Field(default=2, le=1024)
    #: CPUs a local Ray instance may use (None: Ray's own choice)
    ray_num_cpus: PosInt | None = None


class RetentionConfig(Section):
    """How long an ended order (filled, canceled, rejected, expired) stays in
    memory; the store keeps every order durably (rule 13, trading.order_retention)."""

    #: ended orders the coordinator keeps in memory, at most (the oldest go first)
    ended_orders: NonNegInt = Field(default=1000, le=10_000_000)
    #: seconds an ended order stays after its last status change
    ended_order_s: NonNegFloat = Field(default=120.0, le=86_400.0)


class RuntimeConfig(Section):
    #: the one shared CPU executor (feature engineering, margin grid)
    executor_workers: PosInt = Field(default=2, le=64)
    #: worker threads of the dispatcher that runs every pooled actor (DESIGN section 2)
    dispatcher_threads: PosInt = Field(default=1, le=64)
    #: messages a pooled actor may handle per turn before the next actor gets one
    throughput: PosInt = Field(default=64, le=100_000)
    #: a pooled handler running longer than this is counted and logged (it stalls others)
    slow_handler_ms: PosFloat = Field(default=50.0, le=60_000)
    placement: PlacementConfig = PlacementConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    restart_backoff: RestartBackoff = RestartBackoff()
    persistence: PersistenceConfig = PersistenceConfig()
    retention: RetentionConfig = RetentionConfig()
    #: per-actor stop timeout during an orderly shutdown
    shutdown_timeout_s: PosFloat = 30.0


# -- execution safety ---------------------------------------------------------------


class StopsOverride(Section):
    """Per-symbol exit-plan settings; a field left out keeps the ``stops`` value."""

    slippage_bps: PosDec | None = None
    fallback_after_s: PosFloat | None = None
    trailing_step_bps: NonNegDec | None = None
    trailing_interval_s: NonNegFloat | None = None
    take_profit_bps: PosDec | None = None
    trailing_percent: Annotated[Dec, Field(gt=0, lt=100)] | None = None
    time_limit_s: PosFloat | None = None


class StopsConfig(Section):
    """Rule 8: SL-limit within a slippage bound, then cancel-confirm-market fallback;
    and the exit plans' settings (take-profit, trailing stop, time limit)."""

    slippage_bps: PosDec = Decimal("50")
    fallback_after_s: PosFloat = 2.0
    #: alert (never resend) if a cancel confirmation takes longer than this
    cancel_wait_alert_s: PosFloat = 10.0
    #: a trailing stop moves only when its level improves by this much (bps of
    #: the level) and at most once per interval: it never churns
    trailing_step_bps: NonNegDec = Decimal("10")
    trailing_interval_s: NonNegFloat = 1.0
    #: parts an entry's exit plan gets when it carries a plan but leaves them
    #: out (null: none): take-profit this far from the entry price, trailing
    #: stop this percent behind the best price, close after this long
    take_profit_bps: PosDec | None = None
    trailing_percent: Annotated[Dec, Field(gt=0, lt=100)] | None = None
    time_limit_s: PosFloat | None = None
    per_symbol: dict[Symbol, StopsOverride] = {}

    def exit_settings(self) -> dict[str, Any]:
        """The plain values the stop manager's ``ExitSettingsBook`` is built from:
        ``{"default": {...}, "per_symbol": {SYM: {only the overridden fields}}}``."""
        names = tuple(StopsOverride.model_fields)
        return {"default": {n: getattr(self, n) for n in names},
                "per_symbol": {sym: o.model_dump(exclude_none=True)
                               for sym, o in self.per_symbol.items()}}


class HedgerConfig(Section):
    """Rule 7: first hedge at once, later requests within the window coalesced
    (> 0: a zero window would let rapid partial fills cascade into over-hedging)."""

    debounce_ms: PosInt = 500


class ShockGrid(Section):
    """Rule 6 shock scenarios; the grid is their cross product (3 x 3 x 3 = 27)."""

    price: list[Dec] = Field(default=[Decimal("-0.03"), Decimal("0"), Decimal("0.03")],
                             min_length=1)
    iv: list[Dec] = Field(default=[Decimal("0"), Decimal("0.30"), Decimal("0.50")], min_length=1)
    spread: list[Dec] = Field(default=[Decimal("1.0"), Decimal("1.5"), Decimal("2.0")],
                              min_length=1)

    @field_validator("price")
    @classmethod
    def _price(cls, v: list[Decimal]) -> list[Decimal]:
        if any(x <= -1 for x in v):
            raise ValueError("a price shock must be above -1 (-100 %)")
        return v

    @field_validator("iv")
    @classmethod
    def _iv(cls, v: list[Decimal]) -> list[Decimal]:
        if any(x <= -1 for x in v):
            raise ValueError("an IV shock must be above -1 (-100 %)")
        return v

    @field_validator("spread")
    @classmethod
    def _spread(cls, v: list[Decimal]) -> list[Decimal]:
        if any(x < 1 for x in v):
            raise ValueError("a spread multiplier must be >= 1 (a shock never narrows spreads)")
        return v


class GroupsConfig(Section):
    exposure_check_ms: PosInt = 100
    leg_timeout_s: PosFloat = 5.0
    #: worst case over the shock grid must need at most this fraction of available margin
    margin_limit: Fraction = Decimal("0.90")
    shock_grid: ShockGrid = ShockGrid()


# -- connectivity -------------------------------------------------------------------


class ReconnectConfig(BackoffSection):
    """Rule 12: exponential backoff with full jitter, capped at 60 s."""

    base_s: PosFloat = 0.5
    max_s: PosFloat = Field(default=60.0, le=60.0)
    jitter: Jitter = "full"


class ReconnectBudget(Section):
    """Past ``attempts`` within ``window_s``: halt, alert, wait for the window to free."""

    attempts: PosInt = 300
    window_s: PosFloat = 300.0


class WatchdogConfig(Section):
    #: reconnect after this long without any message on the stream
    timeout_s: PosFloat = 15.0


class GatewayConfig(Section):
    reconnect: ReconnectConfig = ReconnectConfig()
    budget: ReconnectBudget = ReconnectBudget()
    watchdog: WatchdogConfig = WatchdogConfig()


class ReconcilerConfig(Section):
    """Rule 11: the poll is never removed; ``poll_s`` must be > 0 and at most 5 minutes."""

    poll_s: PosFloat = Field(default=12.0, le=300.0)
    startup_timeout_s: PosFloat = 30.0


# -- market, strategy, control, run -------------------------------------------------


class MarketConfig(Section):
    """The seeded synthetic market that feeds the default ``run``."""

    symbols: list[Symbol] = Field(
        default=["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"], min_length=1)
    seed: NonNegInt = 42
    tick_interval_ms: PosInt = 100
    bar_interval_s: PosFloat = 1.0
    start_price: PosDec = Decimal("100")
    start_prices: dict[Symbol, PosDec] = {}
    #: standard deviation of the per-tick log return
    tick_volatility: PosDec = Decimal("0.0005")
    spread_bps: PosDec = Decimal("2")
    quote_size: PosDec = Decimal("50")

    @field_validator("symbols")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return unique(v, "symbol")


class StrategyConfig(Section):
    name: Ident = "demo"
    #: strategy-specific; the strategy validates its own parameters
    params: dict[str, Any] = {}
    #: features computed inline in the symbol actor (cheap ones), or on the shared
    #: executor (heavy feature sets and models)
    features: Literal["inline", "executor"] = "inline"


class DemoGroupsConfig(Section):
    """The demo order-group driver of ``run`` (``actors.demo_groups``): rules 6 and 7
    exercised by the default run, not only by scenarios.

    It trades its own pair of symbols, which ``run`` adds to the synthetic market
    with no strategy on them: a pair trade on the strategy's symbols would mostly
    meet the strategy's positions and be refused by netting or the duplicate check.
    It runs only with the embedded simulated exchange (its drills are that
    exchange's fault injection); with ``exchange.url`` it is not started. Off
    unless asked for (``run --drills``): ``--symbols`` means exactly those symbols.
    """

    enabled: bool = False
    symbols: list[Symbol] = Field(default=["ADAUSDT", "DOTUSDT"], min_length=2, max_length=2)
    every_s: PosFloat = 3.0
    qty: PosDec = Decimal("5")
    drills: list[Literal["fill", "rollback", "handoff"]] = Field(
        default=["fill", "rollback", "handoff"], min_length=1)

    @field_validator("symbols")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return unique(v, "symbol")


class DemoConfig(Section):
    groups: DemoGroupsConfig = DemoGroupsConfig()


class ControlConfig(Section):
    """The /metrics, /actors, /healthz endpoint. Loopback unless a token protects it."""

    enabled: bool = True
    host: Host = "127.0.0.1"
    port: Port = 8765
    token_env: EnvName | None = None

    @model_validator(mode="after")
    def _exposed(self) -> ControlConfig:
        if not is_loopback(self.host) and not self.token_env:
            raise ValueError("token_env: a non-loopback control host needs a token "
                             "(name its environment variable in token_env)")
        return self


class RunConfig(Section):
    duration_s: PosFloat = 30.0
    #: run directories are created under this one as runs/<timestamp>/
    out_root: str = Field(default="runs", min_length=1)


class Config(Section):
    runtime: RuntimeConfig = RuntimeConfig()
    risk: RiskConfig = RiskConfig()
    stops: StopsConfig = StopsConfig()
    hedger: HedgerConfig = HedgerConfig()
    groups: GroupsConfig = GroupsConfig()
    gateway: GatewayConfig = GatewayConfig()
    reconciler: ReconcilerConfig = ReconcilerConfig()
    #: rule 18: the sane range of every number from outside
    bounds: BoundsConfig = BoundsConfig()
    alerts: AlertsConfig = AlertsConfig()
    exchange: ExchangeConfig = ExchangeConfig()
    #: real venues by name, for ``run --venue NAME`` (through ccxt)
    venues: dict[Ident, VenueEntry] = Field(default_factory=default_venues)
    market: MarketConfig = MarketConfig()
    strategy: StrategyConfig = StrategyConfig()
    demo: DemoConfig = DemoConfig()
    control: ControlConfig = ControlConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _cross(self) -> Config:
        if self.risk.position_staleness_s <= self.reconciler.poll_s:
            raise ValueError(
                f"risk.position_staleness_s: {self.risk.position_staleness_s} must be above "
                f"reconciler.poll_s ({self.reconciler.poll_s}), or a quiet market makes "
                f"every snapshot stale between polls")
        demo = self.demo.groups
        if demo.enabled and self.exchange.url is None:  # the only case it runs
            shared = sorted(set(demo.symbols) & set(self.market.symbols))
            if shared:
                raise ValueError(
                    f"demo.groups.symbols: {', '.join(shared)} also in market.symbols; the demo "
                    f"pairs need symbols of their own (or set demo.groups.enabled: false)")
        return self
