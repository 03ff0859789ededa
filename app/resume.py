"""``main.py run --resume DIR``: continue a killed run from its store.

The resumed runtime opens DIR's store (positions, fills, orders and the
client order id counter, so new ids never repeat old ones), appends to its
``audit.jsonl`` and ``run.log``, and rewrites ``summary.json`` at the end,
which then covers the whole run (its figures come from the audit trail).
Before any signal is accepted it reconciles with the exchange like any
start: missed fills synthesized, orders that never arrived resubmitted with
the same client order id, positions corrected (the broker wins).

That needs the exchange the run traded with to have outlived it: a
``main.py exchange`` server (``--exchange ws://...``). The embedded
exchange lived inside the killed process and took its books, orders and
positions with it; reconciling against a fresh one would "correct" the
store to an empty account, so resuming such a run is refused.

Each run directory gets a small ``run.json`` at start (run id, exchange URL,
venue, account, symbols, start time, resumes), so ``--resume`` knows where
the run traded without being told again, and refuses to continue it anywhere
else: reconciling the store with another exchange, venue or account would
make "the broker wins" overwrite this run's positions with somebody else's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from messages.jsonl import write_text_atomic

RUN_INFO = "run.json"


class ResumeError(ValueError):
    """The directory cannot be resumed (message says why and what to do)."""


@dataclass
class Resume:
    run_dir: Path
    exchange_url: str
    started_at: str | None
    halted: str | None


def read_run_info(run_dir: Path) -> dict[str, Any]:
    try:
        info: dict[str, Any] = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
        return info
    except (OSError, ValueError):
        return {}


def write_run_info(run_dir: Path, *, run_id: str, exchange_url: str | None,
                   symbols: list[str], now: datetime, resumed: bool,
                   venue: str = "sim", account: str = "default") -> None:
    info = read_run_info(run_dir) if resumed else {}
    info.setdefault("run_id", run_id)
    info.setdefault("started_at", now.isoformat())
    info["exchange_url"] = exchange_url
    # where the run trades, fixed at its first start (``check_same_place``)
    info.setdefault("venue", venue)
    info.setdefault("account", account)
    info["symbols"] = symbols
    if resumed:
        info.setdefault("resumed_at", []).append(now.isoformat())
    save_run_info(run_dir, info)


def save_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    write_text_atomic(run_dir / RUN_INFO, json.dumps(info, indent=2) + "\n")


def prepare(resume_dir: str, out: str | None, exchange_url: str | None) -> Resume:
    """Check DIR can be resumed; the exchange URL is ``--exchange`` or the run's own."""
    run_dir = Path(resume_dir)
    if out and Path(out).resolve() != run_dir.resolve():
        raise ResumeError(f"--resume {resume_dir} continues that directory; --out {out} "
                          "names another (leave --out out)")
    if not (run_dir / "store" / "data.mdb").exists():
        raise ResumeError(f"{run_dir} holds no store (store/data.mdb): not a run directory, "
                          "nothing to resume")
    info = read_run_info(run_dir)
    if info.get("ccxt_venue"):
        raise ResumeError(f"cannot resume {run_dir}: it traded at venue "
                          f"{info['ccxt_venue'].get('name')!r}; resuming a venue run is not "
                          "supported yet (start a new run: it reconciles with the venue first)")
    started_url = info.get("exchange_url")
    if exchange_url and started_url and _same_url(exchange_url) != _same_url(started_url):
        raise ResumeError(f"cannot resume {run_dir} against {exchange_url}: the run started "
                          f"on exchange {started_url}, and its store can only be reconciled "
                          "with that one (leave --exchange out, or start a new run)")
    url = exchange_url or started_url
    if not url:
        raise ResumeError(
            f"cannot resume {run_dir}: it traded on the embedded simulated exchange, which "
            "ended with the killed process (its orders, fills and positions are gone), so "
            "there is nothing to reconcile the store with. Resume works against an exchange "
            "that kept running: start one with `main.py exchange`, run with "
            "--exchange ws://HOST:PORT, and resume with the same --exchange.")
    halted = None
    from messages.persistence import StoreDb
    from app.halt import HALT_KEY
    from trading.store import Store

    store = Store.open(run_dir)
    try:
        rec = store.get(StoreDb.META, HALT_KEY)
        if isinstance(rec, dict):
            halted = str(rec.get("reason"))
    finally:
        store.close()
    return Resume(run_dir, url, info.get("started_at"), halted)


def _same_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


def check_same_place(run_dir: Path, *, venue: str, account: str) -> None:
    """Refuse a resume whose configuration names another venue or account than
    the run started with (both named). A run.json from before these were
    recorded says nothing, and nothing is refused on its account."""
    info = read_run_info(run_dir)
    for what, now in (("venue", venue), ("account", account)):
        then = info.get(what)
        if then is not None and then != now:
            raise ResumeError(f"cannot resume {run_dir} on {what} {now!r}: the run started on "
                              f"{what} {then!r} (exchange.{what} in its config); its store "
                              "holds that one's orders and positions")
