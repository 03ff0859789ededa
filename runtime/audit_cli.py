"""``main.py audit DIR``: query a run's audit trail (one record per risk decision).

Reads ``DIR/audit.jsonl`` (or the file given) without touching the store, so
it works on a live run's directory too. Prints a table of the matching
records and a count per reason; ``--json`` prints the records themselves,
one per line, for ``jq`` and friends.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trading.audit import read_audit


def audit_path(where: str | Path) -> Path:
    p = Path(where)
    return p / "audit.jsonl" if p.is_dir() else p


def main(where: str, *, reason: str | None = None, symbol: str | None = None,
         as_json: bool = False, limit: int = 50) -> int:
    path = audit_path(where)
    if not path.exists():
        print(f"tradewarden audit: no audit trail at {path}", file=sys.stderr)
        return 2
    records = list(read_audit(path, reason=reason, symbol=symbol))
    if as_json:
        for rec in records:
            print(json.dumps(rec, separators=(",", ":")))
        return 0
    console = Console() if sys.stdout.isatty() else Console(width=160)
    what = " ".join(x for x in (f"reason={reason}" if reason else "",
                                f"symbol={symbol}" if symbol else "") if x) or "all records"
    table = Table(title=f"{path} ({what}): {len(records)} record(s)", title_justify="left")
    for col in ("seq", "time", "kind", "reason", "symbol", "side", "qty", "order id"):
        table.add_column(col)
    shown = records[-limit:] if limit > 0 else records
    for rec in shown:
        inputs = rec.get("inputs") or {}
        verdict = rec.get("reason", "")
        if rec.get("approved") is False:
            verdict = f"[red]{verdict}[/red]"
        elif rec.get("approved"):
            verdict = f"[green]{verdict}[/green]"
        table.add_row(str(rec.get("seq", "")), str(rec.get("timestamp", ""))[11:23],
                      rec.get("kind", ""), verdict, str(inputs.get("symbol", "")),
                      str(inputs.get("side", "")), str(inputs.get("qty", "")),
                      str(rec.get("client_order_id") or ""))
    console.print(table)
    if len(shown) < len(records):
        console.print(f"(last {len(shown)} of {len(records)}; --limit 0 shows all)")
    by_reason = Counter(r.get("reason") for r in records)
    console.print("by reason: " + (", ".join(f"{k} {v}" for k, v in by_reason.most_common())
                                   or "none"))
    return 0
