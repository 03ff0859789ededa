"""``main.py run``: the main job, live, on the embedded simulated exchange.

Starts the whole tree on the live clock with the seeded synthetic market and
the configured strategy, shows progress while it runs, then drains (no new
market data, in-flight orders settle, one last reconciliation with the
exchange), stops the tree in reverse order and writes the run directory:
``summary.json``, ``events.jsonl`` (the exchange's record), ``audit.jsonl``,
``store/`` and ``run.log``. SIGINT/SIGTERM end the run early the same
orderly way (rule 16). The exit code is 0 unless a safety invariant broke.
``--resume DIR`` continues a killed run in its own directory (``runtime.resume``).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger
from rich.console import Console

from config import ConfigError, config_hash, load_config
from runtime.clock import LiveClock
from runtime.launcher import LaunchSpec, Runtime, demo_plan
from runtime.logs import RunLogs
from runtime.stop_request import StopRequest
from runtime.summary import collect_summary, print_summary, write_summary

DRAIN_TIMEOUT_S = 5.0


def run_overrides(args: Any) -> dict[str, Any]:
    """Command-line options as a config layer (validated with the rest)."""
    over: dict[str, Any] = {}
    if args.symbols:
        over.setdefault("market", {})["symbols"] = [s.strip() for s in args.symbols.split(",")
                                                    if s.strip()]
    if args.seed is not None:
        over.setdefault("market", {})["seed"] = args.seed
    if args.duration is not None:
        over.setdefault("run", {})["duration_s"] = args.duration
    if args.exchange:
        over.setdefault("exchange", {})["url"] = args.exchange
    if args.strategy:
        over.setdefault("strategy", {})["name"] = args.strategy
    control = getattr(args, "control", None)
    if control:
        if control.strip().lower() == "off":
            over["control"] = {"enabled": False}
        else:
            from runtime.control import parse_hostport

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


def run(args: Any) -> int:
    from runtime.control import ControlError

    from runtime import resume as resuming

    resume = None
    if getattr(args, "resume", None):
        try:
            resume = resuming.prepare(args.resume, args.out, args.exchange)
        except resuming.ResumeError as exc:
            print(f"tradewarden run: {exc}", file=sys.stderr)
            return 2
        args.exchange = resume.exchange_url
    try:
        cfg = load_config(args.config, overrides=run_overrides(args))
    except (ConfigError, ControlError) as exc:
        print(f"tradewarden run: configuration error\n{exc}", file=sys.stderr)
        return 2
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
                            resumed=resume is not None)
    console = Console(stderr=False)
    with RunLogs(run_dir, verbose=args.verbose):
        if resume is not None:
            logger.warning("resuming run {} from its store against {}{}", run_id, cfg.exchange.url,
                           f" (it had halted: {resume.halted})" if resume.halted else "")
            console.print(f"resuming [cyan]{run_id}[/cyan] from its store; reconciling with "
                          f"{cfg.exchange.url} before trading")
        return _run(cfg, run_dir, run_id, clock, started, console,
                    control_explicit=bool(getattr(args, "control", None)),
                    first_started=resume.started_at if resume is not None else None)


def _run(cfg: Any, run_dir: Path, run_id: str, clock: LiveClock, started: datetime,
         console: Console, control_explicit: bool = False,
         first_started: str | None = None) -> int:
    from exchange.synthetic import SyntheticMarket

    symbols, demo_groups = demo_plan(cfg)  # the demo pair trades symbols of its own
    duration = float(cfg.run.duration_s)
    m = cfg.market
    market = None
    if cfg.exchange.url is None:
        market = SyntheticMarket(symbols, seed=m.seed, tick_interval_s=m.tick_interval_ms / 1000,
                                 bar_interval_s=m.bar_interval_s, start_price=m.start_price,
                                 start_prices=m.start_prices, tick_volatility=m.tick_volatility,
                                 spread_bps=m.spread_bps, quote_size=m.quote_size, start=started)
    spec = LaunchSpec(cfg, run_dir, symbols, clock, run_id=run_id, config_hash=config_hash(cfg),
                      seed=m.seed, exchange_url=cfg.exchange.url, market=market,
                      market_duration_s=duration, demo_groups=demo_groups)
    logger.info("run {} starting: {} symbols, {:.0f}s, strategy {}, exchange {}", run_id,
                len(symbols), duration, cfg.strategy.name, cfg.exchange.url or "in-process sim")
    console.print(f"[bold]Tradewarden[/bold] run [cyan]{run_id}[/cyan]: {len(symbols)} symbols, "
                  f"{duration:g}s, strategy {cfg.strategy.name}, "
                  f"exchange {cfg.exchange.url or 'embedded simulator'}  ->  {run_dir}")
    rt = Runtime(spec)
    control = _bind_control(rt, cfg, console, control_explicit)
    if control is False:
        return 2
    events_mark = None
    if cfg.exchange.url is not None:
        from runtime.run_events import mark_run_start

        events_mark = mark_run_start(run_dir, cfg.exchange.url)
    from runtime.report import Sampler, write_report

    sampler = Sampler(min_interval_s=0.5)
    t0 = time.monotonic()
    stop = StopRequest().install()
    try:
        rt.start()
        if control is not None:
            control.start()
            console.print(f"control endpoint: {control.url}  (/metrics /actors /healthz)")
        _progress(rt, duration, stop, console, sampler)
        _drain(rt)
        sampler.sample(rt, time.monotonic() - t0, force=True)
    finally:
        stop.restore()
        if control is not None:
            control.stop()
        rt.stop()
    if events_mark is not None:
        from runtime.run_events import copy_run_events

        copied = copy_run_events(run_dir, cfg.exchange.url, events_mark)
        console.print(f"events.jsonl: {copied} records copied from {cfg.exchange.url}"
                      if copied is not None else
                      "[yellow]events.jsonl could not be copied from the exchange "
                      "(see run.log)[/yellow]")
    ended = LiveClock().now()
    extra: dict[str, Any] = {"run_dir": str(run_dir), "symbols": list(symbols),
                             "interrupted_by": stop.signal}
    if first_started is not None:  # resumed: the summary covers the whole run
        extra["resumed_at"] = started.isoformat()
    summary = collect_summary(rt, started_at=first_started or started.isoformat(),
                              ended_at=ended.isoformat(), extra=extra)
    write_summary(run_dir / "summary.json", summary)
    try:
        write_report(run_dir, summary, sampler, title=f"Tradewarden run {run_id}")
    except Exception:  # noqa: BLE001 - a report bug never changes the run's outcome
        logger.exception("could not write report.html")
    print_summary(summary, f"Tradewarden run {run_id}", console)
    console.print(f"run directory: {run_dir}")
    bad = summary["invariant_violations"]
    for v in bad:
        logger.error("invariant violated: {}", v["detail"])
    return 1 if bad else 0


def _bind_control(rt: Runtime, cfg: Any, console: Console, explicit: bool) -> Any:
    """Bind the control endpoint before the runtime starts (None: off; False: give up).

    A busy port is fatal only when ``--control`` asked for it; the default
    port from the config being taken (another run) leaves this run without
    an endpoint but trading, since observability is not a safety feature.
    """
    from runtime.control import ControlError, from_config

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


def _progress(rt: Runtime, duration: float, stop: StopRequest, console: Console,
              sampler: Any = None) -> None:
    """Wait for the run to end, showing what the runtime is doing; feed the report sampler."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    t0 = time.monotonic()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    interactive = console.is_terminal
    last_line = 0.0
    with Progress(*columns, console=console, disable=not interactive, transient=False) as bar:
        task = bar.add_task("running", total=duration, status="")
        while not stop.event.wait(0.25):
            elapsed = time.monotonic() - t0
            if sampler is not None:
                sampler.sample(rt, elapsed)
            status = _status_line(rt)
            bar.update(task, completed=min(elapsed, duration), status=status)
            if not interactive and elapsed - last_line >= 5.0:
                last_line = elapsed
                console.print(f"[{elapsed:5.1f}s/{duration:g}s] {status}")
            if elapsed >= duration:
                break
    if stop.signal:
        console.print(f"{stop.signal} received: stopping in order")
        logger.warning("{} received: orderly stop", stop.signal)


def _status_line(rt: Runtime) -> str:
    c = rt.info("coordinator")
    counts = c.get("counts", {})
    md = rt.info("gateway").get("counts", {}).get("market_events", 0)
    open_pos = sum(1 for q in (c.get("positions") or {}).values() if q not in ("0",))
    return (f"events {md:,}  signals {counts.get('signals', 0)}  "
            f"approved {counts.get('approved', 0)}  rejected {sum(c.get('rejected', {}).values())}  "
            f"fills {counts.get('fills', 0)}  open positions {open_pos}  "
            f"state {c.get('trading_state', '?')}")


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
