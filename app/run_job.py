"""``main.py run``: the main job, live, on the embedded simulated exchange.

Starts the whole tree on the live clock with the seeded synthetic market and
the configured strategy, shows progress while it runs, then drains (no new
market data, in-flight orders settle, one last reconciliation with the
exchange), stops the tree in reverse order and writes the run directory:
``summary.json``, ``events.jsonl`` (the exchange's record), ``audit.jsonl``,
``store/`` and ``run.log``. SIGINT/SIGTERM end the run early the same
orderly way (rule 16). A runtime that halted (root supervisor gave up, disk
full) ends the run at once, with the cause in summary.json. Exit codes
(DESIGN section 8, ``app.summary.exit_code``): 0 every check ran and
held; 1 an invariant failed or could not be checked; 2 bad usage, config or
input; 3 the runtime halted.
``--resume DIR`` continues a killed run in its own directory (``app.resume``).

This module takes the command line to a started runtime and back: options
and run directory, pre-flight refusals (exit 2 before anything is written),
the control endpoint, the drain. ``app.run_console`` shows the run while it
goes; ``app.run_end`` checks and summarises it once the tree has stopped.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from collections.abc import Callable
from typing import Any

from loguru import logger
from rich.console import Console

from app.console import cli_console
from config import ConfigError, config_hash, load_config
from runtime.clock import LiveClock
from app.launcher import LaunchSpec, Runtime, demo_plan
from app.logs import RunLogs
from app.run_console import drill_banner, warmup_note, watch_progress
from app.run_end import finish_run
from app.stop_request import StopRequest
from app.summary import EXIT_USAGE

DRAIN_TIMEOUT_S = 5.0


def run_overrides(args: Any) -> dict[str, Any]:
    """Command-line options as a config layer (validated with the rest)."""
    over: dict[str, Any] = {}
    if args.symbols:  # a list from the command line's parser; text from older callers
        symbols = args.symbols
        if isinstance(symbols, str):
            symbols = [s.strip() for s in symbols.split(",") if s.strip()]
        over.setdefault("market", {})["symbols"] = list(symbols)
    if args.seed is not None:
        over.setdefault("market", {})["seed"] = args.seed
    if args.duration is not None:
        over.setdefault("run", {})["duration_s"] = args.duration
    if args.exchange:
        over.setdefault("exchange", {})["url"] = args.exchange
    if args.strategy:
        over.setdefault("strategy", {})["name"] = args.strategy
    ray = getattr(args, "ray", None)
    if ray:
        over.setdefault("runtime", {})["placement"] = {"symbols": "ray", "ray_address": ray}
    if getattr(args, "drills", False):
        over.setdefault("demo", {}).setdefault("groups", {})["enabled"] = True
    control = getattr(args, "control", None)
    if control:
        if control.strip().lower() == "off":
            over["control"] = {"enabled": False}
        else:
            from app.control import parse_hostport

            host, port = parse_hostport(control)
            over["control"] = {"enabled": True, "host": host, "port": port}
    return over


def new_run_dir(root: str | Path, now: datetime) -> Path:
    base = Path(root) / now.strftime("%Y%m%dT%H%M%SZ")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def refuse_reuse(out: Path) -> str | None:
    """Why ``--out`` cannot take a new run (None: it can). A run directory holds one
    run: a second one would reopen the first one's store and append to its audit
    trail and events, and its summary would count both."""
    if not out.exists():
        return None
    if not out.is_dir():
        return f"--out {out} is a file, not a directory"
    if any(out.iterdir()):
        return (f"--out {out} is not empty (it holds another run's files); a run directory "
                f"holds exactly one run: name a new directory, or continue that run with "
                f"--resume {out}")
    return None


def run(args: Any, preflight: Callable[[Any], Any] | None = None) -> int:
    """``preflight(cfg)`` raises ValueError for a config the runtime cannot start
    with (e.g. an unknown strategy), before anything is written; what it returns
    (the strategy) may say how many quotes it needs before its first signal."""
    from app.control import ControlError

    from app import position_legs, resume as resuming

    if not getattr(args, "resume", None) and args.out:
        why = refuse_reuse(Path(args.out))
        if why is not None:
            print(f"tradewarden run: {why}", file=sys.stderr)
            return 2
    resume = None
    if getattr(args, "resume", None):
        try:
            resume = resuming.prepare(args.resume, args.out, args.exchange,
                                      getattr(args, "venue", None))
        except resuming.ResumeError as exc:
            print(f"tradewarden run: {exc}", file=sys.stderr)
            return EXIT_USAGE
        args.exchange = resume.exchange_url
        if resume.venue_name is not None:
            args.venue = resume.venue_name
    try:
        cfg = load_config(args.config, overrides=run_overrides(args))
    except (ConfigError, ControlError) as exc:
        print(f"tradewarden run: configuration error\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    if resume is not None:
        try:
            resuming.check_same_place(resume.run_dir, venue=cfg.exchange.venue,
                                      account=cfg.exchange.account)
        except resuming.ResumeError as exc:
            print(f"tradewarden run: {exc}", file=sys.stderr)
            return EXIT_USAGE
    venue = None
    if getattr(args, "venue", None):
        from exchange.ccxt_venue.venue_config import VenueStartError, prepare_venue

        try:
            venue = prepare_venue(cfg, args.venue, live=bool(getattr(args, "live", False)),
                                  exchange_url=args.exchange)
            if resume is not None:
                resuming.check_same_venue(resume.run_dir, venue.describe())
        except (VenueStartError, ConfigError, resuming.ResumeError) as exc:
            print(f"tradewarden run: {exc}", file=sys.stderr)
            return EXIT_USAGE
    elif getattr(args, "live", False):
        print("tradewarden run: --live only applies to --venue", file=sys.stderr)
        return EXIT_USAGE
    if cfg.runtime.placement.symbols == "ray":
        from runtime.ray_placement import ray_missing

        why = ray_missing()
        if why is not None:
            print(f"tradewarden run: --ray: {why}", file=sys.stderr)
            return EXIT_USAGE
    warmup = None
    if preflight is not None:
        try:
            warmup = getattr(preflight(cfg), "warmup", None)
        except ValueError as exc:
            print(f"tradewarden run: {exc}", file=sys.stderr)
            return EXIT_USAGE
    clock = LiveClock()
    started = clock.now()
    if resume is not None:
        run_dir = resume.run_dir
    else:
        run_dir = Path(args.out) if args.out else new_run_dir(cfg.run.out_root, started)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = run_dir.name
    resuming.write_run_info(run_dir, run_id=run_id, exchange_url=cfg.exchange.url,
                            symbols=list(cfg.market.symbols), now=started,
                            resumed=resume is not None, venue=cfg.exchange.venue,
                            account=cfg.exchange.account)
    if venue is not None:  # what, not how: no key or secret in run.json
        info = resuming.read_run_info(run_dir)
        info["ccxt_venue"] = venue.describe()
        if venue.settings.hedge_mode and position_legs.RUN_INFO_KEY not in info:
            why = position_legs.note_start(venue, info)
            if why is not None:
                print(f"tradewarden run: {why}", file=sys.stderr)
                return EXIT_USAGE
        resuming.save_run_info(run_dir, info)
    console = cli_console()
    with RunLogs(run_dir, verbose=args.verbose):
        if resume is not None:
            where = venue.label() if venue is not None else cfg.exchange.url
            logger.warning("resuming run {} from its store against {}{}", run_id, where,
                           f" (it had halted: {resume.halted})" if resume.halted else "")
            console.print(f"resuming [cyan]{run_id}[/cyan] from its store; reconciling with "
                          f"{where} before trading")
        return _run(cfg, run_dir, run_id, clock, started, console,
                    control_explicit=bool(getattr(args, "control", None)),
                    first_started=resume.started_at if resume is not None else None,
                    venue=venue, warmup=warmup)


def _run(cfg: Any, run_dir: Path, run_id: str, clock: LiveClock, started: datetime,
         console: Console, control_explicit: bool = False,
         first_started: str | None = None, venue: Any = None,
         warmup: int | None = None) -> int:
    from exchange.synthetic import SyntheticMarket

    symbols, demo_groups = demo_plan(cfg)  # the demo pair trades symbols of its own
    if venue is not None:  # a real venue's own market data; no demo drills there
        symbols, demo_groups = tuple(cfg.market.symbols), None
    duration = float(cfg.run.duration_s)
    m = cfg.market
    market = None
    if cfg.exchange.url is None and venue is None:
        market = SyntheticMarket(symbols, seed=m.seed, tick_interval_s=m.tick_interval_ms / 1000,
                                 bar_interval_s=m.bar_interval_s, start_price=m.start_price,
                                 start_prices=m.start_prices, tick_volatility=m.tick_volatility,
                                 spread_bps=m.spread_bps, quote_size=m.quote_size, start=started)
    spec = LaunchSpec(cfg, run_dir, symbols, clock, run_id=run_id, config_hash=config_hash(cfg),
                      seed=m.seed, exchange_url=cfg.exchange.url, market=market,
                      market_duration_s=duration, demo_groups=demo_groups,
                      venue=venue.settings if venue is not None else None,
                      instrument_rules=venue.rules if venue is not None else {})
    where = (venue.label() if venue is not None else cfg.exchange.url) or "in-process sim"
    logger.info("run {} starting: {} symbols, {:.0f}s, strategy {}, exchange {}", run_id,
                len(symbols), duration, cfg.strategy.name, where)
    traded = [s for s in symbols if demo_groups is None or s not in demo_groups.symbols]
    console.print(f"[bold]Tradewarden[/bold] run [cyan]{run_id}[/cyan]: {', '.join(traded)}, "
                  f"{duration:g}s, strategy {cfg.strategy.name}, "
                  f"exchange {where if where != 'in-process sim' else 'embedded simulator'}"
                  f"  ->  {run_dir}")
    if demo_groups is not None:
        for line in drill_banner(demo_groups):
            console.print(line)
    if isinstance(warmup, int) and warmup > 1:
        console.print(warmup_note(cfg, warmup))
    rt = Runtime(spec)
    control = _bind_control(rt, cfg, console, control_explicit)
    if control is False:
        return EXIT_USAGE
    if control is not None:
        control.advertise(run_dir)  # the kill-switch command finds the endpoint and its token
    events_mark = None
    # the exchange's record: a WebSocket exchange's, or the simulator's Binance face
    # (a venue with a base_url; a real venue has none, and the copy is skipped)
    record_url = cfg.exchange.url or (venue.base_url if venue is not None else None)
    if record_url is not None:
        from app.run_events import mark_run_start

        events_mark = mark_run_start(run_dir, record_url)
    from app.report_sampler import Sampler

    sampler = Sampler(min_interval_s=0.5)
    t0 = time.monotonic()
    stop = StopRequest().install()
    try:
        rt.start()
        if control is not None:
            control.start()
            console.print(f"control endpoint: {control.url}  (/metrics /actors /healthz)")
        watch_progress(rt, duration, stop, console, sampler)
        if not rt.require_system().halted:  # a halted tree has stopped already: nothing to drain
            _drain(rt)
        sampler.sample(rt, time.monotonic() - t0, force=True)
    finally:
        stop.restore()
        if control is not None:
            control.stop()
        rt.stop()
    return finish_run(rt, run_dir, run_id, console, symbols=symbols, started=started,
                      first_started=first_started, interrupted_by=stop.signal, venue=venue,
                      record_url=record_url, events_mark=events_mark, sampler=sampler)


def _bind_control(rt: Runtime, cfg: Any, console: Console, explicit: bool) -> Any:
    """Bind the control endpoint before the runtime starts (None: off; False: give up).

    A busy port is fatal only when ``--control`` asked for it; the default
    port from the config being taken (another run) leaves this run without
    an endpoint but trading, since observability is not a safety feature.
    """
    from app.control import ControlError, from_config

    try:
        control = from_config(rt, cfg.control)
        return control.bind() if control is not None else None
    except (ConfigError, ControlError) as exc:
        print(f"tradewarden run: control endpoint: {exc}", file=sys.stderr)
        return False
    except OSError as exc:
        where = f"{cfg.control.host}:{cfg.control.port}"
        if explicit:
            print(f"tradewarden run: cannot serve the control endpoint on {where}: {exc}",
                  file=sys.stderr)
            return False
        logger.warning("control endpoint not started: {} busy ({})", where, exc)
        console.print(f"[yellow]control endpoint not started: {where} is busy "
                      "(use --control HOST:PORT or --control off)[/yellow]")
        return None


def _drain(rt: Runtime) -> None:
    """Stop the market, then let orders waiting for the broker's answer settle."""
    from actors.market_feed import StopFeed

    system = rt.require_system()
    for name in ("market", "demo-groups"):  # no new market data, no new demo group
        if system.directory.get(name) is not None:
            system.tell(name, StopFeed("run ending"))
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        by_status = rt.info("coordinator").get("orders_by_status", {})
        if by_status.get("intent", 0) + by_status.get("submitted", 0) == 0 and system.is_quiescent():
            return
        time.sleep(0.02)
    logger.warning("drain: orders {} after {}s", rt.info("coordinator").get("orders_by_status"),
                   DRAIN_TIMEOUT_S)
