"""Scenario files (DESIGN section 9): parsing and validation only.

A scenario is a safety test written as data, so a mistake in one must never
make it pass by testing less: every key is known or an error, every value
is checked, and every error names the file, the line and the key path
(``tests/scenarios/x.yaml:12: timeline[3].quote.bidd: unknown key``). The
runner gets plain frozen dataclasses with Decimal prices and quantities,
a fully validated :class:`~config.Config` (defaults plus the scenario's
``config:`` block) and the timeline sorted by time, stably, so entries at the
same instant keep the order they were written in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from pydantic import ValidationError

from config.errors import ConfigError, Issue, Loc, describe, format_path
from config.loader import build_config, default_path
from config.registry import plain
from config.sim_exchange import EXCHANGE_KEYS, FAULT, SETTING
from config.scenario_schema import EXPECT_KEYS, EntryDoc, ScenarioDoc
from config.schema import Config
from config.source import Source, read_yaml
from messages.enums import Side
from messages.types import DEFAULT_ACCOUNT, Account, Price, Quantity, Symbol

__all__ = [
    "BarEvent", "ControlEvent", "CrashEvent", "EndEvent", "Event", "ExchangeEvent", "GroupEvent",
    "QuoteEvent", "RestartEvent", "Scenario", "SignalEvent", "TimelineEntry", "load_scenario",
    "ConfigError", "EXCHANGE_KEYS", "EXPECT_KEYS",
]


# -- what the runner gets -------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteEvent:
    symbol: Symbol
    bid: Price
    ask: Price
    bid_size: Quantity | None = None
    ask_size: Quantity | None = None


@dataclass(frozen=True)
class BarEvent:
    symbol: Symbol
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Quantity


@dataclass(frozen=True)
class SignalEvent:
    """A strategy output injected directly (it still passes the coordinator's gate)."""

    symbol: Symbol
    side: Side
    qty: Quantity
    stop_loss: Price | None = None
    account: Account = DEFAULT_ACCOUNT
    reduce_only: bool = False
    strategy: str = "scenario"
    take_profit: Decimal | None = None
    trailing_distance: Decimal | None = None
    trailing_percent: Decimal | None = None
    time_limit_s: float | None = None


@dataclass(frozen=True)
class ExchangeEvent:
    """Behaviour change or fault for the simulated exchange, exactly as written
    (validated; ``SimulatedExchange.apply`` parses it)."""

    spec: Mapping[str, Any]


@dataclass(frozen=True)
class CrashEvent:
    """The runtime dies as if killed; a later ``restart`` brings it back from its store."""

    point: str | None = None


@dataclass(frozen=True)
class RestartEvent:
    pass


@dataclass(frozen=True)
class ControlEvent:
    kill_switch: bool
    reason: str | None = None


@dataclass(frozen=True)
class GroupEvent:
    """An order group as written; the order-group builder validates it (see Scenario.where)."""

    spec: Mapping[str, Any]


@dataclass(frozen=True)
class EndEvent:
    pass


Event = (QuoteEvent | BarEvent | SignalEvent | ExchangeEvent | CrashEvent | RestartEvent
         | ControlEvent | GroupEvent | EndEvent)


@dataclass(frozen=True)
class TimelineEntry:
    at: Decimal          # seconds from the start of the scenario, exact
    event: Event
    line: int            # line of the entry in the file, for the runner's messages
    index: int           # position in the file's timeline (before sorting)

    @property
    def kind(self) -> str:
        return _KIND_OF[type(self.event)]

    @property
    def at_s(self) -> float:
        return float(self.at)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. ``symbols`` are the symbols the run trades; the
    runner uses them (not ``config.market.symbols``, which feeds the synthetic
    market of ``run``). ``at`` times are exact Decimal seconds."""

    name: str
    path: str
    seed: int
    config: Config                      # defaults + the scenario's config block, validated
    config_overrides: Mapping[str, Any]  # the config block as written
    exchange: Mapping[str, Any]          # exchange settings as written (validated)
    symbols: tuple[str, ...]
    timeline: tuple[TimelineEntry, ...]  # sorted by `at`, stable
    expect: Mapping[str, Any]            # validated against EXPECT_KEYS
    description: str | None = None
    lines: Mapping[Loc, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def end_at(self) -> Decimal | None:
        """Time of the ``end`` entry, if any (else the runner stops when quiet after the last)."""
        ends = [e.at for e in self.timeline if isinstance(e.event, EndEvent)]
        return ends[0] if ends else None

    def where(self, *path: Any) -> str:
        """``file:line: key.path`` for messages about a part validated later (e.g. a group)."""
        issue = Source(self.path, {}, self.lines).issue(tuple(path), "")
        where = f"{issue.file}:{issue.line}" if issue.line is not None else issue.file
        return f"{where}: {issue.path}" if issue.path else where


_KIND_OF = {QuoteEvent: "quote", BarEvent: "bar", SignalEvent: "signal",
            ExchangeEvent: "exchange", CrashEvent: "crash", RestartEvent: "restart",
            ControlEvent: "control", GroupEvent: "group", EndEvent: "end"}


# -- loading ----------------------------------------------------------------------------


def load_scenario(path: str | Path, config_path: str | Path | None = None) -> Scenario:
    """Parse and validate one scenario file; raises ConfigError (file, line, key) on any problem.

    ``Scenario.config`` is config/default.yaml, then ``config_path`` if given,
    then the scenario's ``config:`` block. Every part is checked even when
    another part is broken, so one run lists every mistake in the file.
    """
    src = read_yaml(path)
    issues: list[Issue] = []
    doc: ScenarioDoc | None = None
    try:
        doc = ScenarioDoc.model_validate(src.data)
    except ValidationError as exc:
        issues.extend(_issues(src, exc))
    raw = src.data
    exchange = _exchange(src, raw.get("exchange"), ("exchange",), (SETTING,), issues)
    expect = _drop_none(_registry(src, EXPECT_KEYS, raw.get("expect"), ("expect",), issues))
    entry_exchange = _timeline_exchange(src, raw.get("timeline"), issues)
    config: Config | None = None
    if isinstance(raw.get("config", {}), dict):
        try:
            layers = [read_yaml(default_path())]
            if config_path is not None:
                layers.append(read_yaml(config_path))
            config = build_config(layers + [src.sub("config")])
        except ConfigError as exc:
            issues.extend(exc.issues)
    entries: list[TimelineEntry] = []
    if doc is not None:
        for i, entry in enumerate(doc.timeline):
            line = src.line_of(("timeline", i)) or 0
            event = _event(entry, entry_exchange.get(i))
            entries.append(TimelineEntry(entry.at, event, line, i))
        entries.sort(key=lambda e: e.at)  # stable: same-time entries keep file order
        issues.extend(_sequence_issues(src, entries))
    if issues or doc is None or config is None:
        raise ConfigError(sorted(issues, key=lambda i: (i.file != src.name, i.line or 0)))
    return Scenario(
        name=doc.name or Path(path).stem, path=src.name, seed=doc.seed, config=config,
        config_overrides=doc.config, exchange=exchange, symbols=tuple(doc.symbols),
        timeline=tuple(entries), expect=expect, description=doc.description, lines=src.lines)


def _drop_none(expect: dict[str, Any]) -> dict[str, Any]:
    """Counts left out of ``orders: {...}`` are not checked: omit them rather than hand
    the runner Nones (a count range's own ``max: None``, "no upper bound", stays)."""
    return {k: ({n: c for n, c in v.items() if c is not None} if isinstance(v, dict) else v)
            for k, v in expect.items()}


def _issues(src: Source, exc: ValidationError, prefix: Loc = ()) -> list[Issue]:
    out = []
    for err in exc.errors(include_url=False):
        loc, message, _ = describe(err)
        out.append(src.issue(prefix + tuple(loc), message))
    return out


def _registry(src: Source, registry: Any, data: Any, prefix: Loc, issues: list[Issue],
              groups: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Validate an open mapping against a KeyRegistry (non-mappings: ScenarioDoc reports them)."""
    if not isinstance(data, dict):
        return {}
    try:
        valid: dict[str, Any] = registry.validate(data, groups)
        return valid
    except ValidationError as exc:
        issues.extend(_issues(src, exc, prefix))
        return {}


def _timeline_exchange(src: Source, timeline: Any, issues: list[Issue]) -> dict[int, dict[str, Any]]:
    """The ``exchange`` spec of each timeline entry that has one, validated, by entry index."""
    out: dict[int, dict[str, Any]] = {}
    if not isinstance(timeline, list):
        return out
    for i, entry in enumerate(timeline):
        if not isinstance(entry, dict) or "exchange" not in entry:
            continue
        spec = entry["exchange"]
        if spec is None or spec == {}:
            issues.append(src.issue(("timeline", i, "exchange"),
                                    f"needs at least one of: {', '.join(EXCHANGE_KEYS.keys())}"))
            continue
        out[i] = _exchange(src, spec, ("timeline", i, "exchange"), (SETTING, FAULT), issues)
    return out


def _exchange(src: Source, spec: Any, prefix: Loc, groups: tuple[str, ...],
              issues: list[Issue]) -> dict[str, Any]:
    """Check an exchange block; return it as written (the exchange parses it by
    the same schema, ``config.sim_exchange``, when it applies it)."""
    if not isinstance(spec, dict):
        return {}
    before = len(issues)
    if FAULT not in groups:
        for key in spec:
            if EXCHANGE_KEYS.group_of(key) == FAULT:
                issues.append(src.issue(prefix + (key,), "is a one-shot fault, not a setting: "
                                        "put it in a timeline exchange entry (e.g. at: 0s)"))
        spec = {k: v for k, v in spec.items() if EXCHANGE_KEYS.group_of(k) != FAULT}
    _registry(src, EXCHANGE_KEYS, spec, prefix, issues, groups)
    return dict(spec) if len(issues) == before else {}


def _event(entry: EntryDoc, exchange_spec: dict[str, Any] | None) -> Event:
    kind = entry.kind
    value = getattr(entry, kind)
    if kind == "quote":
        return QuoteEvent(**plain(value))
    if kind == "bar":
        return BarEvent(**plain(value))
    if kind == "signal":
        data = plain(value)
        data["side"] = Side(data["side"])
        trailing = data.pop("trailing_stop") or {}
        data["trailing_distance"] = trailing.get("distance")
        data["trailing_percent"] = trailing.get("percent")
        limit = data.pop("time_limit")
        data["time_limit_s"] = None if limit is None else float(limit)
        return SignalEvent(**data)
    if kind == "exchange":
        return ExchangeEvent(exchange_spec or {})
    if kind == "crash":
        return CrashEvent(value.point)
    if kind == "restart":
        return RestartEvent()
    if kind == "control":
        return ControlEvent(value.kill_switch, value.reason)
    if kind == "group":
        return GroupEvent(dict(value))
    return EndEvent()


#: entries that need a running runtime (quote, bar and exchange go to the exchange, which
#: keeps working while the runtime is down)
RUNTIME_ONLY = (SignalEvent, ControlEvent, GroupEvent)


def _sequence_issues(src: Source, entries: list[TimelineEntry]) -> list[Issue]:
    """Crash/restart must pair up, with only exchange entries between them; ``end``
    is unique and last."""
    issues: list[Issue] = []

    def at(e: TimelineEntry, message: str) -> None:
        issues.append(Issue(src.name, e.line, format_path(("timeline", e.index, e.kind)), message))

    crashed: TimelineEntry | None = None
    end: TimelineEntry | None = None
    for e in entries:
        if end is not None:
            at(e, f"comes after the end entry (at {end.at}s, line {end.line}): nothing runs "
                  f"after end")
            continue
        if isinstance(e.event, CrashEvent):
            if crashed is not None:
                at(e, f"the runtime is already down (crash on line {crashed.line}): restart first")
            crashed = e
        elif isinstance(e.event, RestartEvent):
            if crashed is None:
                at(e, "restart without an earlier crash")
            crashed = None
        elif isinstance(e.event, EndEvent):
            end = e
        elif (crashed is not None and isinstance(e.event, RUNTIME_ONLY)
              and isinstance(crashed.event, CrashEvent)
              and crashed.event.point is None):  # an armed point: up until it is reached
            at(e, f"the runtime is down (crash on line {crashed.line}) until the next restart: "
                  f"only quote, bar and exchange entries apply then (to the exchange)")
    if crashed is not None:
        at(crashed, "crash without a later restart")
    return issues
