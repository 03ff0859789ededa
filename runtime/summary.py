"""summary.json (DESIGN section 8): what a run or scenario did, in one object.

Figures come from durable records where they exist, so they survive an
actor restart or a runtime crash mid-run: risk decisions, signals, hedge
and stop orders and order-group outcomes from ``audit.jsonl``; order
outcomes from the coordinator's order table (rebuilt from the store after a
restart); positions from both sides. Counters held only in memory (market
events) come from the actors' introspection figures. The same function
serves ``run`` and ``scenario``, so the two summaries have the same shape.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.table import Table

SUMMARY_SCHEMA_VERSION = 1
#: keys of summary.json that differ between two identical runs
VOLATILE_KEYS = ("run_id", "started_at", "ended_at", "run_dir", "wall_s")


def order_counts(by_status: Mapping[str, int]) -> dict[str, int]:
    """Final order outcomes; ``submitted`` counts every order that left for the broker."""
    sent = {k: v for k, v in by_status.items() if k not in ("intent", "not_durable")}
    return {"submitted": sum(sent.values()),
            "filled": sent.get("filled", 0),
            "partially_filled": sent.get("partially_filled", 0),
            # the exchange ending an order itself (expired) is a cancel by the broker
            "canceled": sent.get("canceled", 0) + sent.get("expired", 0),
            "rejected": sent.get("rejected", 0)}


#: terminal group states (``trading.group_state``) and the summary key counting each
GROUP_OUTCOMES = {"filled": "filled", "rolled_back": "rolled_back", "failed": "failed"}


def group_figures(audit: list[Mapping]) -> dict[str, int]:
    """Order groups (rule 6) from their ``group_decision`` records.

    ``submitted``: every group asked for, refused ones included. A group ends
    ``filled``, ``rolled_back`` (its filled legs unwound) or ``failed`` (gave
    its residue to the hedger) after its margin gate approved it; one refused
    before any leg went out (bad spec, duplicate id, ``worst_case_margin``,
    no market) is ``rejected``; ``open`` had not ended when the run stopped.
    """
    last: dict[str, Mapping] = {}
    approved: set[str] = set()
    refused = 0
    for r in audit:
        if r.get("kind") != "group_decision":
            continue
        gid = r.get("group_id")
        if r.get("state") == "rejected":  # refused by ``groups``: no group actor ever ran
            refused += 1
        elif gid is not None:
            last[gid] = r
            if r.get("approved") is True:
                approved.add(gid)
    out = {"submitted": len(last) + refused, "filled": 0, "rolled_back": 0, "failed": 0,
           "rejected": refused, "open": 0}
    for gid, r in last.items():
        state = r.get("state")
        if state == "failed" and gid not in approved:
            out["rejected"] += 1
        elif state in GROUP_OUTCOMES:
            out[GROUP_OUTCOMES[state]] += 1
        else:
            out["open"] += 1
    return out


def audit_figures(audit: list[Mapping]) -> dict[str, Any]:
    decisions = [r for r in audit if r.get("kind") == "risk_decision"]
    rejected = Counter(r.get("reason") for r in decisions if not r.get("approved"))
    approved = [r for r in decisions if r.get("approved")]

    def purpose(r: Mapping) -> str | None:
        return (r.get("inputs") or {}).get("purpose")
    stop_orders = [r for r in approved if purpose(r) == "stop"]
    return {
        "signals": sum(1 for r in decisions if r.get("source") == "signal"),
        "risk": {"approved": len(approved), "rejected": dict(sorted(rejected.items()))},
        "hedges": sum(1 for r in approved if purpose(r) == "hedge"),
        "stop_orders": {
            "limit": sum(1 for r in stop_orders if r.get("order_type") != "market"),
            "market_fallback": sum(1 for r in stop_orders if r.get("order_type") == "market")},
        "kill_switch_trips": sum(1 for r in audit if r.get("kind") == "kill_switch"
                                 and r.get("reason") == "engaged"),
        "divergences": sum(1 for r in audit if r.get("kind") == "divergence"),
    }


def build_summary(*, run_id: str, started_at: str, ended_at: str, audit: list[Mapping],
                  coordinator: Mapping[str, Any], market_events: int,
                  exchange_positions: Mapping[str, Any] | None, restarts: Mapping[str, int],
                  violations: list[dict], stops: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    figures = audit_figures(audit)
    stop_exits = dict((stops or {}).get("stop_exits") or figures["stop_orders"])
    pnl = coordinator.get("pnl") or {"realized": "0", "unrealized": "0"}
    summary: dict[str, Any] = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "run_id": run_id,
        "started_at": started_at,
        "ended_at": ended_at,
        "market_events": market_events,
        "signals": figures["signals"],
        "orders": order_counts(coordinator.get("orders_by_status") or {}),
        "risk": figures["risk"],
        "hedges": figures["hedges"],
        "groups": group_figures(audit),
        "stop_exits": {"limit": int(stop_exits.get("limit", 0)),
                       "market_fallback": int(stop_exits.get("market_fallback", 0))},
        "positions": {s: str(q) for s, q in sorted((coordinator.get("positions") or {}).items())},
        "exchange_positions": (None if exchange_positions is None else
                               {s: str(q) for s, q in sorted(exchange_positions.items())}),
        "restarts": {k: v for k, v in sorted(restarts.items()) if v},
        "invariant_violations": violations,
        "pnl": {"realized": str(pnl.get("realized", "0")),
                "unrealized": str(pnl.get("unrealized", "0"))},
        "kill_switch": {"trips": figures["kill_switch_trips"],
                        "state": coordinator.get("trading_state"),
                        "reason": coordinator.get("kill_reason")},
        "divergences": figures["divergences"],
    }
    summary.update(extra or {})
    return summary


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    from runtime.run_files import write_text_atomic

    write_text_atomic(path, json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n")


def comparable(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without times and ids: equal for two runs of the same scenario."""
    return {k: v for k, v in summary.items() if k not in VOLATILE_KEYS}


def summary_table(summary: Mapping[str, Any], title: str = "Tradewarden run") -> Table:
    """The readable end-of-run table (the JSON has everything)."""
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    o = summary["orders"]
    r = summary["risk"]
    t.add_row("run", f"{summary['run_id']}  ({summary['started_at']} -> {summary['ended_at']})")
    t.add_row("market events", f"{summary['market_events']:,}")
    t.add_row("signals", str(summary["signals"]))
    t.add_row("risk", f"{r['approved']} approved, {sum(r['rejected'].values())} rejected"
              + (": " + ", ".join(f"{k} {v}" for k, v in r["rejected"].items())
                 if r["rejected"] else ""))
    t.add_row("orders", ", ".join(f"{k} {v}" for k, v in o.items()))
    t.add_row("stop exits", f"limit {summary['stop_exits']['limit']}, "
              f"market fallback {summary['stop_exits']['market_fallback']}")
    t.add_row("hedges", str(summary["hedges"]))
    g = summary.get("groups")
    if g is not None:
        t.add_row("order groups", f"{g['submitted']} submitted: filled {g['filled']}, "
                  f"rolled back {g['rolled_back']}, failed {g['failed']} (residue to the hedger), "
                  f"rejected {g['rejected']}" + (f", open {g['open']}" if g.get("open") else ""))
    ex = summary.get("exchange_positions")
    pos = ", ".join(f"{s} {q}" + ("" if ex is None or ex.get(s, "0") == q else f" (exchange {ex.get(s)})")
                    for s, q in summary["positions"].items() if q not in ("0",)) or "flat"
    t.add_row("positions", pos)
    t.add_row("pnl", f"realized {summary['pnl']['realized']}, "
              f"unrealized {summary['pnl']['unrealized']}")
    ks = summary["kill_switch"]
    t.add_row("kill switch", f"{ks['state']}" + (f" ({ks['reason']})" if ks.get("reason") else ""))
    t.add_row("restarts", ", ".join(f"{k} {v}" for k, v in summary["restarts"].items()) or "none")
    v = summary["invariant_violations"]
    t.add_row("invariants", "[green]all held[/green]" if not v else
              f"[red]{len(v)} violated[/red]: " + "; ".join(x["detail"] for x in v[:5]))
    if "expect" in summary:
        e = summary["expect"]
        t.add_row("expect", "[green]passed[/green]" if e["passed"] else
                  "[red]failed[/red]: " + "; ".join(e["failures"]))
    return t


def print_summary(summary: Mapping[str, Any], title: str, console: Console | None = None) -> None:
    (console or Console()).print(summary_table(summary, title))


def load_run_records(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(events.jsonl records, audit.jsonl records) of a run directory; missing = empty."""
    from runtime.run_files import iter_jsonl

    def read(name: str) -> list[dict]:
        path = run_dir / name
        return list(iter_jsonl(path)) if path.exists() else []
    return read("events.jsonl"), read("audit.jsonl")


def collect_summary(rt: Any, *, started_at: str, ended_at: str,
                    extra: Mapping[str, Any] | None = None,
                    records: tuple[list[dict], list[dict]] | None = None) -> dict[str, Any]:
    """Summary of a stopped :class:`~runtime.launcher.Runtime`, invariants checked.

    ``records`` are the run's (events, audit) when the caller has read them
    already (the scenario runner needs them for its expect checks too)."""
    from runtime.invariants import check_all

    events, audit = records if records is not None else load_run_records(rt.spec.run_dir)
    coordinator = rt.info("coordinator")
    exchange_positions = rt.exchange_positions() if rt.engine is not None else None
    system = rt.system
    dead = system.dead_letters.snapshot(recent=1000)["recent"]
    violations = check_all(
        events=events, audit=audit, positions=coordinator.get("positions") or {},
        exchange_positions=exchange_positions,
        hedging_accounts=frozenset(a for a, on in rt.config.risk.hedging_mode.items() if on),
        fail_closed=rt.config.risk.fail_closed_on_missing_positions, dead_letters=dead)
    market_events = int(rt.info("gateway").get("counts", {}).get("market_events", 0))
    return build_summary(run_id=rt.spec.run_id, started_at=started_at, ended_at=ended_at,
                         audit=audit, coordinator=coordinator, market_events=market_events,
                         exchange_positions=exchange_positions,
                         restarts=dict(system.restart_counts), violations=violations,
                         stops=rt.info("stops"), extra=extra)
