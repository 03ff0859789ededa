"""The end of ``main.py run`` once its tree has stopped: checks, summary, verdict.

:func:`finish_run` copies the exchange's record of the run into
``events.jsonl`` (when the exchange keeps it elsewhere), checks a hedge-mode
venue's position legs, collects the summary with its invariants, writes
``summary.json`` and ``report.html``, prints the verdict and returns the exit
code (``app.summary.exit_code``). A check that could not run is named in
``checks_not_run``, never passed; a summary that cannot be written (a full
disk) still reaches the operator on stdout after :data:`SUMMARY_ON_STDOUT`;
a report that fails never changes the outcome.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from rich.console import Console

from app.summary import EXIT_MEANING, collect_summary, exit_code, print_summary, write_summary
from runtime.clock import LiveClock

if TYPE_CHECKING:
    from app.launcher import Runtime

#: the line before summary.json's content on stdout when it cannot be written
SUMMARY_ON_STDOUT = "summary.json follows:"


def finish_run(rt: Runtime, run_dir: Path, run_id: str, console: Console, *,
               symbols: tuple[str, ...], started: datetime, first_started: str | None,
               interrupted_by: str | None, venue: Any, record_url: str | None,
               events_mark: Any, sampler: Any) -> int:
    """Check and summarise a stopped run; its exit code. ``record_url``: where the
    exchange keeps its record (None: the run directory has it already), read
    from ``events_mark`` on; ``first_started``: a resumed run's first start."""
    from app.report import write_report

    not_run: dict[str, str] = {}
    if record_url is not None:
        from app.invariants import EVENT_CHECKS
        from app.run_events import copy_run_events

        copied = (copy_run_events(run_dir, record_url, events_mark)
                  if events_mark is not None else None)
        console.print(f"events.jsonl: {copied} records copied from {record_url}"
                      if copied is not None else
                      "[yellow]events.jsonl could not be copied from the exchange "
                      "(see run.log)[/yellow]")
        if copied is None:
            not_run.update({c: "the exchange's events.jsonl could not be copied"
                            for c in EVENT_CHECKS})
    ended = LiveClock().now()
    extra: dict[str, Any] = {"run_dir": str(run_dir), "symbols": list(symbols),
                             "interrupted_by": interrupted_by}
    if rt.require_system().halted:
        extra["halted"] = {"reason": rt.require_system().halt_reason}
    if first_started is not None:  # resumed: the summary covers the whole run
        extra["resumed_at"] = started.isoformat()
    legs_found: list[dict[str, Any]] = []
    if venue is not None and venue.settings.hedge_mode:
        from app.position_legs import check_legs

        legs_found = check_legs(venue, run_dir, extra, not_run)
    summary = collect_summary(rt, started_at=first_started or started.isoformat(),
                              ended_at=ended.isoformat(), extra=extra, not_run=not_run,
                              more_violations=legs_found)
    try:
        write_summary(run_dir / "summary.json", summary)
    except OSError as exc:  # a full disk: the verdict still reaches the operator
        logger.error("could not write summary.json: {}", exc)
        console.print(f"[red]summary.json could not be written ({exc})[/red]")
        print(f"{SUMMARY_ON_STDOUT}\n{json.dumps(summary, indent=2, default=str)}",
              file=console.file, flush=True)
    try:
        write_report(run_dir, summary, sampler, title=f"Tradewarden run {run_id}")
    except OSError as exc:
        logger.error("could not write report.html: {}", exc)
    except Exception:  # noqa: BLE001 - a report bug never changes the run's outcome
        logger.exception("could not write report.html")
    print_summary(summary, f"Tradewarden run {run_id}", console)
    console.print(f"run directory: {run_dir}")
    for v in summary["invariant_violations"]:
        logger.error("invariant violated: {}", v["detail"])
    for check, why in summary["checks_not_run"].items():
        logger.error("check {} did not run: {}", check, why)
    code = exit_code(summary)
    if code:
        console.print(f"exit code {code}: {EXIT_MEANING[code]}")
    return code
