"""The run directory's ``events.jsonl`` when the exchange is a WebSocket server.

With the embedded exchange the engine writes the run's ``events.jsonl``
itself. Against ``main.py exchange`` the record lives with the server, so
the run marks where it stood at the start (kept in ``run.json``: a resumed
run keeps the first mark and so copies the whole run) and copies what came
after it once the runtime has stopped, before the summary's invariants read
it (``exchange.events_fetch``). A failure to read it is logged and shown,
never fatal: trading is over by then, and the invariants then have no
exchange events to check, which the summary table says.

Such an exchange is shared across runs: the mark also holds the positions
it had then, and the run's invariants (``remote_scope``) replay its fills
from those, over its own account's records only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from pathlib import Path

from loguru import logger

from exchange.events_fetch import EventsFetchError, EventsMark, events_mark, fetch_events
from app.resume import read_run_info, save_run_info

MARK_KEY = "exchange_events_mark"


def mark_run_start(run_dir: Path, url: str) -> EventsMark | None:
    """The run's mark: the one in ``run.json`` (a resumed run), else a new one."""
    info = read_run_info(run_dir)
    if MARK_KEY in info:
        try:
            return EventsMark.from_json(info[MARK_KEY])
        except EventsFetchError as exc:
            logger.warning("run.json: {}; taking a new mark", exc)
    try:
        mark = events_mark(url)
    except EventsFetchError as exc:
        logger.warning("events.jsonl will not be copied from {}: {}", url, exc)
        return None
    info[MARK_KEY] = mark.to_json()
    save_run_info(run_dir, info)
    logger.info("exchange record at the start: seq {} (byte {})", mark.seq, mark.cursor)
    return mark


def copy_run_events(run_dir: Path, url: str, mark: EventsMark) -> int | None:
    """Copy the exchange's records after ``mark`` to ``run_dir/events.jsonl``."""
    try:
        n = fetch_events(url, mark, run_dir / "events.jsonl")
    except EventsFetchError as exc:
        logger.error("could not copy the exchange's events.jsonl from {}: {}", url, exc)
        return None
    logger.info("copied {} exchange records (after seq {}) from {} to events.jsonl", n,
                mark.seq, url)
    return n


def remote_scope(run_dir: Path, account: str,
                 events: list[dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], Decimal]] | None:
    """For the invariants of a run whose events.jsonl was copied from a shared
    exchange: its account's records only (another account's orders are not
    this run's to explain) and the positions the exchange held at the mark.
    None for a run on the embedded exchange (its record is its own, from flat)."""
    info = read_run_info(run_dir)
    if MARK_KEY not in info:
        return None
    try:
        mark = EventsMark.from_json(info[MARK_KEY])
    except EventsFetchError as exc:
        logger.warning("run.json: {}; invariants replay from flat positions", exc)
        mark = EventsMark(0, 0)
    mine = [e for e in events if e.get("account") in (None, account)]
    return mine, {key: qty for key, qty in mark.positions.items() if key[0] == account}
