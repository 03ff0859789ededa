"""The run directory's ``events.jsonl`` when the exchange is a WebSocket server.

With the embedded exchange the engine writes the run's ``events.jsonl``
itself. Against ``main.py exchange`` the record lives with the server, so
the run marks where it stood at the start (kept in ``run.json``: a resumed
run keeps the first mark and so copies the whole run) and copies what came
after it once the runtime has stopped, before the summary's invariants read
it (``exchange.events_fetch``). A failure to read it is logged and shown,
never fatal: trading is over by then, and the invariants then have no
exchange events to check, which the summary table says.
"""

from __future__ import annotations

import json
from pathlib import Path

from loguru import logger

from exchange.events_fetch import EventsFetchError, EventsMark, events_mark, fetch_events
from runtime.resume import RUN_INFO, read_run_info
from runtime.run_files import write_text_atomic

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
    write_text_atomic(run_dir / RUN_INFO, json.dumps(info, indent=2) + "\n")
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
