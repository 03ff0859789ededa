"""``main.py audit DIR``: query a run's audit trail (one record per risk decision).

Reads ``DIR/audit.jsonl`` (or the file given) without touching the store, so
it works on a live run's directory too. Prints a table of the matching
records (full timestamps; a group's records show the group's symbols) and a
count per reason; ``--json`` prints the records themselves, one per line, for
``jq`` and friends. ``--symbol`` ignores case; an unknown ``--reason`` is an
error that lists the known ones. ``audit verify DIR`` walks the file's hash
chain and names the first record that was changed, inserted or removed.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.console import cli_console, quiet_broken_pipe
from trading.audit import decision_reasons, read_audit, verify_audit


def audit_path(where: str | Path) -> Path:
    p = Path(where)
    return p / "audit.jsonl" if p.is_dir() else p


def full_time(ts: Any) -> str:
    """An ISO timestamp to the millisecond with its offset (the raw text if unparsable)."""
    try:
        return datetime.fromisoformat(str(ts)).isoformat(timespec="milliseconds")
    except ValueError:
        return str(ts or "")


def group_symbols(records: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """group id -> its legs' symbols, from the records that list the legs."""
    out: dict[str, list[str]] = {}
    for rec in records:
        inputs = rec.get("inputs") or {}
        gid = rec.get("group_id") or inputs.get("group_id")
        if not gid:
            continue
        syms = [str(leg.get("symbol")) for leg in inputs.get("legs") or []
                if isinstance(leg, dict) and leg.get("symbol")]
        syms += [str(s) for s in (inputs.get("filled") or {})]
        for s in syms:
            if s not in out.setdefault(str(gid), []):
                out[str(gid)].append(s)
    return out


def record_symbols(rec: dict[str, Any], groups: dict[str, list[str]]) -> list[str]:
    """The symbols a record is about: its own, or its group's legs'."""
    inputs = rec.get("inputs") or {}
    if inputs.get("symbol"):
        return [str(inputs["symbol"])]
    gid = rec.get("group_id") or inputs.get("group_id")
    return list(groups.get(str(gid), [])) if gid else []


def known_reasons(records: Iterable[dict[str, Any]]) -> list[str]:
    """The risk decision codes plus every reason the file holds (groups, kill switch, ...)."""
    return sorted(set(decision_reasons()) | {str(r.get("reason")) for r in records
                                                if r.get("reason")})


def select(records: list[dict[str, Any]], *, reason: str | None,
           symbol: str | None) -> Iterator[dict[str, Any]]:
    groups = group_symbols(records)
    want = symbol.upper() if symbol else None
    for rec in records:
        if reason is not None and str(rec.get("reason", "")).lower() != reason.lower():
            continue
        if want is not None and want not in {s.upper() for s in record_symbols(rec, groups)}:
            continue
        yield rec


def main(where: str, *, reason: str | None = None, symbol: str | None = None,
         as_json: bool = False, limit: int = 50) -> int:
    path = audit_path(where)
    if not path.exists():
        print(f"tradewarden audit: no audit trail at {path}", file=sys.stderr)
        return 2
    everything = list(read_audit(path))
    if reason is not None:
        valid = known_reasons(everything)
        if reason.lower() not in valid:
            print(f"tradewarden audit: unknown --reason {reason!r}; valid reasons: "
                  f"{', '.join(valid)}", file=sys.stderr)
            return 2
    records = list(select(everything, reason=reason, symbol=symbol))
    with quiet_broken_pipe():
        if as_json:
            for rec in records:
                sys.stdout.write(json.dumps(rec, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            return 0
        _table(cli_console(), path, everything, records, reason, symbol, limit)
    return 0


def _table(console: Console, path: Path, everything: list[dict[str, Any]],
           records: list[dict[str, Any]], reason: str | None, symbol: str | None,
           limit: int) -> None:
    groups = group_symbols(everything)
    what = " ".join(x for x in (f"reason={reason}" if reason else "",
                                f"symbol={symbol}" if symbol else "") if x) or "all records"
    table = Table(title=f"{path} ({what}): {len(records)} record(s)", title_justify="left")
    for col in ("seq", "time", "kind", "reason", "symbol", "side", "qty", "order / group"):
        table.add_column(col, no_wrap=col in ("seq", "time", "reason"))
    shown = records[-limit:] if limit > 0 else records
    for rec in shown:
        inputs = rec.get("inputs") or {}
        verdict = rec.get("reason", "")
        if rec.get("approved") is False:
            verdict = f"[red]{verdict}[/red]"
        elif rec.get("approved"):
            verdict = f"[green]{verdict}[/green]"
        gid = rec.get("group_id") or inputs.get("group_id")
        ref = rec.get("client_order_id") or (f"group {gid}" if gid else "")
        table.add_row(str(rec.get("seq", "")), full_time(rec.get("timestamp")),
                      rec.get("kind", ""), verdict, ",".join(record_symbols(rec, groups)),
                      str(inputs.get("side", "")), str(inputs.get("qty", "")), str(ref))
    console.print(table)
    if len(shown) < len(records):
        console.print(f"(last {len(shown)} of {len(records)}; --limit 0 shows all)")
    by_reason = Counter(r.get("reason") for r in records)
    console.print("by reason: " + (", ".join(f"{k} {v}" for k, v in by_reason.most_common())
                                   or "none"))


def held_in_store(run_dir: Path, last_seq: int) -> int:
    """Audit records the run's store holds beyond ``last_seq`` (durable with the
    intents they preceded, not yet in the file: trading.audit)."""
    from messages.persistence import StoreDb
    from trading.store import Store

    try:
        store = Store.open(run_dir, readonly=True)
    except (FileNotFoundError, OSError):
        return 0
    try:
        return sum(1 for key, _ in store.items(StoreDb.AUDIT) if int(key) > last_seq)
    finally:
        store.close()


def verify(where: str) -> int:
    """``audit verify DIR``: 0 if the chain holds, 1 naming the first broken record."""
    path = audit_path(where)
    if not path.exists():
        print(f"tradewarden audit verify: no audit trail at {path}", file=sys.stderr)
        return 2
    n, broken = verify_audit(path)
    if broken is None:
        print(f"{path}: {n} record(s), hash chain intact")
        held = held_in_store(path.parent, n)
        if held:
            print(f"{held} more record(s) after seq {n} are held in the run's store (the run "
                  "stopped before they were written out): its next start appends them")
        return 0
    seq = f" (seq {broken.seq})" if broken.seq is not None else ""
    print(f"{path}: hash chain broken at line {broken.line}{seq}: {broken.problem}; "
          f"the {n} record(s) before it are intact", file=sys.stderr)
    return 1
