"""What ``main.py run`` shows the operator while it runs.

The start-of-run notes (the strategy's warmup, the ``--drills`` banner) and
the progress display: a bar on a terminal, a plain status line every 5 s
otherwise, read from the runtime's coordinator and gateway. Showing never
changes the run: :func:`watch_progress` only waits for the run's end (its
duration, a stop signal or a halted runtime) and feeds the report sampler.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from loguru import logger
from rich.console import Console

from app.stop_request import StopRequest

if TYPE_CHECKING:
    from app.launcher import Runtime


def warmup_note(cfg: Any, warmup: int) -> str:
    """Why the first seconds show no signal: the strategy counts quotes first."""
    if cfg.exchange.url is None:
        secs = warmup * cfg.market.tick_interval_ms / 1000
        pace = f"about {secs:g}s at this market's {cfg.market.tick_interval_ms:g} ms ticks"
    else:
        pace = (f"about {warmup * 0.1:g}s at `main.py exchange`'s default 100 ms ticks "
                f"(its --tick-ms sets the pace)")
    return (f"strategy {cfg.strategy.name}: no signal before {warmup} quotes per symbol "
            f"(its warmup): {pace}")


#: what each drill shows, for the banner (actors.demo_groups carries them out)
DRILL_SHOWS = {
    "fill": "a pair (long one symbol, short the other) fills; the next step closes it",
    "rollback": "the exchange rejects the short leg; the group unwinds the long leg (rule 6)",
    "handoff": "the exchange rejects the unwinds too; the group hands its residue to the "
               "hedger, which sells it (rule 7) and raises a CRITICAL alert marked DRILL",
}


def drill_banner(demo: Any) -> list[str]:
    """The lines announcing ``--drills``: which pair, how often, what each drill shows."""
    pair = " and ".join(demo.symbols)
    lines = [f"[yellow]DRILLS[/yellow] every {demo.every_s:g}s on {pair} (their own pair, "
             f"no strategy on it); alerts they cause are marked DRILL:"]
    for drill in dict.fromkeys(demo.drills):
        lines.append(f"  {drill:<9} {DRILL_SHOWS.get(drill, '')}")
    return lines


def watch_progress(rt: Runtime, duration: float, stop: StopRequest, console: Console,
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
            status = status_line(rt)
            bar.update(task, completed=min(elapsed, duration), status=status)
            if not interactive and elapsed - last_line >= 5.0:
                last_line = elapsed
                # plain print: through rich, every distinct line and word of a
                # long run filled its 4,096-entry width caches (~20 KB a minute)
                print(f"[{elapsed:5.1f}s/{duration:g}s] {status}", file=console.file, flush=True)
            if elapsed >= duration:
                break
            if rt.require_system().halted:  # the tree is gone: waiting out the duration would lie
                console.print(f"[red]runtime halted: {rt.require_system().halt_reason}[/red]")
                break
    if stop.signal:
        console.print(f"{stop.signal} received: stopping in order")
        logger.warning("{} received: orderly stop", stop.signal)


def status_line(rt: Runtime) -> str:
    """One line of what the runtime is doing: events, signals, orders, positions, state."""
    c = rt.info("coordinator")
    counts = c.get("counts", {})
    md = rt.info("gateway").get("counts", {}).get("market_events", 0)
    open_pos = sum(1 for q in (c.get("positions") or {}).values() if q not in ("0",))
    return (f"events {md:,}  signals {counts.get('signals', 0)}  "
            f"approved {counts.get('approved', 0)}  rejected {sum(c.get('rejected', {}).values())}  "
            f"fills {counts.get('fills', 0)}  open positions {open_pos}  "
            f"state {c.get('trading_state', '?')}")
