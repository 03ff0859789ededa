"""``main.py bench``: every figure measured side by side in one run.

Prints a table and writes one flat JSON object (DESIGN section 10 keys).
Each section is independent: one that fails is reported with its error and
the others still run, so a broken piece never hides the rest.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

from loguru import logger


def _sections(quick: bool) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    from app.bench import core, exchange, storage

    n_sql = 2_000 if quick else 10_000
    sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("runtime", lambda: core.run(quick)),
        ("sqlite", lambda: {
            "sqlite_wal_full_per_record_per_s": round(storage.sqlite_per_record_per_s(n_sql, "FULL")),
            "sqlite_wal_normal_per_record_per_s": round(storage.sqlite_per_record_per_s(n_sql, "NORMAL")),
        }),
    ]
    extra = getattr(storage, "lmdb_section", None)
    if extra is not None:
        sections.append(("lmdb", lambda: extra(quick)))
    sections.append(("exchange", lambda: exchange.run(quick)))
    from app.bench import pipeline  # the whole tree end to end

    sections.append(("pipeline", lambda: pipeline.run(quick)))
    from app.bench import hedge  # margin grid (rule 6) and hedge lag (rule 7)

    sections.append(("margin+hedge", lambda: hedge.run(quick)))
    from app.bench import ccxt_face  # ccxt against the Binance face on loopback

    sections.append(("ccxt", lambda: ccxt_face.run(quick)))
    from app.bench import ccxt_adapter  # the ccxt venue adapter's own time per order

    sections.append(("ccxt adapter", lambda: ccxt_adapter.run(quick)))
    from app.bench import remote_hop  # remote actors: the codec alone, and Ray

    sections.append(("remote", lambda: remote_hop.run(quick)))
    return sections


def run(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {
        "schema_version": 1,
        "quick": quick,
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    errors: dict[str, str] = {}
    for name, fn in _sections(quick):
        t0 = time.perf_counter()
        print(f"  bench {name} ...", flush=True)
        try:
            results.update(fn())
        except Exception as exc:  # noqa: BLE001 - reported, the other sections still run
            logger.opt(exception=exc).error("bench section {} failed", name)
            errors[name] = f"{type(exc).__name__}: {exc}"
        print(f"  bench {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    if errors:
        results["errors"] = errors
    return results


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Tradewarden benchmark")
    table.add_column("key")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    Console().print(table)


def main(*, quick: bool, out: str | None) -> int:
    logger.remove()
    logger.add(lambda m: print(m, end=""), level="WARNING")
    results = run(quick)
    print_table(results)
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}")
    return 1 if results.get("errors") else 0
