"""``main.py run --resume DIR``: continue a killed run from its store.

The resumed runtime opens DIR's store (positions, fills, orders and the
client order id counter, so new ids never repeat old ones), appends to its
``audit.jsonl`` and ``run.log``, and rewrites ``summary.json`` at the end,
which then covers the whole run (its figures come from the audit trail).
Before any signal is accepted it reconciles with the exchange like any
start: missed fills synthesized, orders that never arrived resubmitted with
the same client order id, positions corrected (the broker wins).

That needs the exchange the run traded with to have outlived it: a
``main.py exchange`` server (``--exchange ws://...``) or a venue
(``--venue NAME``: the same entry of the config's ``venues`` section, so the
same exchange id, endpoint, mode and account; orders in flight at the kill
are looked up there by their client order id). The embedded
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
    #: the WebSocket exchange the run traded at, or None for a venue run
    exchange_url: str | None
    started_at: str | None
    halted: str | None
    #: the ``venues`` entry the run traded at (``run --venue``), or None
    venue_name: str | None = None


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


def prepare(resume_dir: str, out: str | None, exchange_url: str | None,
            venue_name: str | None = None) -> Resume:
    """Check DIR can be resumed; the exchange URL is ``--exchange`` or the run's
    own, the venue ``--venue`` or the run's own (the two never mix)."""
    run_dir = Path(resume_dir)
    if out and Path(out).resolve() != run_dir.resolve():
        raise ResumeError(f"--resume {resume_dir} continues that directory; --out {out} "
                          "names another (leave --out out)")
    if not (run_dir / "store" / "data.mdb").exists():
        raise ResumeError(f"{run_dir} holds no store (store/data.mdb): not a run directory, "
                          "nothing to resume")
    info = read_run_info(run_dir)
    started_venue = info.get("ccxt_venue")
    if isinstance(started_venue, dict):
        return _prepare_venue(run_dir, info, started_venue, exchange_url, venue_name)
    started_url = info.get("exchange_url")
    if venue_name:
        raise ResumeError(f"cannot resume {run_dir} at venue {venue_name!r}: the run started on "
                          f"{'exchange ' + started_url if started_url else 'the embedded simulated exchange'}"
                          ", and its store can only be reconciled with that one (leave --venue out)")
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
    return Resume(run_dir, url, info.get("started_at"), _halted(run_dir))


def _prepare_venue(run_dir: Path, info: dict[str, Any], started: dict[str, Any],
                   exchange_url: str | None, venue_name: str | None) -> Resume:
    """A run that traded at a venue resumes at the same ``venues`` entry only
    (its recorded name; what the entry resolves to is checked by
    :func:`check_same_venue` once the config is read)."""
    name = str(started.get("name") or "")
    if exchange_url:
        raise ResumeError(f"cannot resume {run_dir} against {exchange_url}: the run started at "
                          f"venue {name!r}, and its store can only be reconciled with that one "
                          f"(leave --exchange out; --venue {name} or nothing)")
    if venue_name and venue_name != name:
        raise ResumeError(f"cannot resume {run_dir} at venue {venue_name!r}: the run started at "
                          f"venue {name!r}, and its store can only be reconciled with that one "
                          f"(--venue {name}, or leave --venue out)")
    return Resume(run_dir, None, info.get("started_at"), _halted(run_dir), venue_name=name)


def _halted(run_dir: Path) -> str | None:
    """The halt recorded in the store (a run that halted before it was killed)."""
    from messages.persistence import StoreDb
    from app.halt import HALT_KEY
    from trading.store import Store

    store = Store.open(run_dir)
    try:
        rec = store.get(StoreDb.META, HALT_KEY)
        return str(rec.get("reason")) if isinstance(rec, dict) else None
    finally:
        store.close()


#: what a venue run must keep to be resumed: (key in run.json's ccxt_venue, what it is)
VENUE_IDENTITY = (("exchange_id", "exchange"), ("mode", "mode"), ("base_url", "endpoint"),
                  ("account", "account"))


def check_same_venue(run_dir: Path, now: dict[str, Any]) -> None:
    """Refuse a venue resume whose ``venues`` entry now resolves to another
    exchange, mode (testnet / live), endpoint or account than the run started
    with (both named): the same name no longer means the same place."""
    then = read_run_info(run_dir).get("ccxt_venue")
    if not isinstance(then, dict):
        return
    name = then.get("name")
    for key, what in VENUE_IDENTITY:
        if key in then and then.get(key) != now.get(key):
            raise ResumeError(f"cannot resume {run_dir} at venue {name!r} with {what} "
                              f"{now.get(key)!r}: the run started there with {what} "
                              f"{then.get(key)!r} (venues.{name} in its config); its store "
                              "holds that one's orders and positions")


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
