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
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from app.invariants import Record

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


#: terminal group states (``trading.group_state``), each counted under its own name
GROUP_OUTCOMES = ("filled", "rolled_back", "failed")


def group_figures(audit: Sequence[Record]) -> dict[str, int]:
    """Order groups (rule 6) from their ``group_decision`` records.

    ``submitted``: every group asked for, refused ones included. A group ends
    ``filled``, ``rolled_back`` (its filled legs unwound) or ``failed`` (gave
    its residue to the hedger) after its margin gate approved it; one refused
    before any leg went out (bad spec, duplicate id, ``worst_case_margin``,
    no market) is ``rejected``; ``open`` had not ended when the run stopped.
    """
    last: dict[str, Record] = {}
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
            out[state] += 1
        else:
            out["open"] += 1
    return out


def audit_figures(audit: Sequence[Record]) -> dict[str, Any]:
    decisions = [r for r in audit if r.get("kind") == "risk_decision"]
    rejected = Counter(r.get("reason") for r in decisions if not r.get("approved"))
    approved = [r for r in decisions if r.get("approved")]

    def purpose(r: Record) -> str | None:
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


def kill_switch_history(audit: Sequence[Record]) -> list[dict[str, Any]]:
    """Each trip of the kill switch from the audit trail: when, why, and when (and
    why) it was released; ``released_at`` None while it is still engaged."""
    trips: list[dict[str, Any]] = []
    for r in audit:
        if r.get("kind") != "kill_switch":
            continue
        why = (r.get("inputs") or {}).get("why")
        if r.get("reason") == "engaged":
            trips.append({"engaged_at": r.get("timestamp"), "reason": why,
                          "released_at": None, "released_because": None})
        elif r.get("reason") == "released" and trips and trips[-1]["released_at"] is None:
            trips[-1].update(released_at=r.get("timestamp"), released_because=why)
    return trips


def kill_switch_line(ks: Mapping[str, Any]) -> str:
    """``never tripped`` or ``tripped 1x at T (why), released at T2``, then the state now."""
    trips = ks.get("history") or []
    if not trips:
        if ks.get("state") == "HALTED":  # engaged before this run's audit trail began
            return f"HALTED since before this run ({ks.get('reason')})"
        return "never tripped"
    parts = []
    for t in trips:
        part = f"at {t['engaged_at']} ({t['reason']})"
        part += (f", released at {t['released_at']}" if t["released_at"] else ", still engaged")
        parts.append(part)
    return f"tripped {len(trips)}x: " + "; ".join(parts)


def build_summary(*, run_id: str, started_at: str, ended_at: str, audit: Sequence[Record],
                  coordinator: Mapping[str, Any], market_events: int,
                  exchange_positions: Mapping[str, Any] | None, restarts: Mapping[str, int],
                  violations: list[dict[str, Any]], stops: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None,
                  not_run: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``not_run``: check -> why it could not run (shown, never counted as held)."""
    from app.invariants import check_statuses

    figures = audit_figures(audit)
    not_run = dict(not_run or {})
    if exchange_positions is None:
        not_run.setdefault("positions_match", "the exchange's positions were not read")
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
        # every exit plan that completed, by kind (stop_exits' two are among them)
        "exits": {k: int(v) for k, v in sorted(((stops or {}).get("exits") or {}).items())},
        "positions": {s: str(q) for s, q in sorted((coordinator.get("positions") or {}).items())},
        "exchange_positions": (None if exchange_positions is None else
                               {s: str(q) for s, q in sorted(exchange_positions.items())}),
        "restarts": {k: v for k, v in sorted(restarts.items()) if v},
        "invariant_violations": violations,
        "checks": check_statuses(violations, not_run),
        "checks_not_run": dict(sorted(not_run.items())),
        "pnl": {"realized": str(pnl.get("realized", "0")),
                "unrealized": str(pnl.get("unrealized", "0"))},
        "kill_switch": {"trips": figures["kill_switch_trips"],
                        "state": coordinator.get("trading_state"),
                        "reason": coordinator.get("kill_reason"),
                        "history": kill_switch_history(audit)},
        "divergences": figures["divergences"],
    }
    summary.update(extra or {})
    return summary


#: exit codes of ``run`` and ``scenario`` (DESIGN section 8)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HALTED = 0, 1, 2, 3
EXIT_MEANING = {
    EXIT_OK: "every check ran and held",
    EXIT_FAILED: "an invariant or expectation failed, or a check could not run",
    EXIT_USAGE: "bad usage, configuration or input file",
    EXIT_HALTED: "the runtime halted (supervisor gave up, disk full)",
}


def exit_code(summary: Mapping[str, Any]) -> int:
    """The process exit code a summary calls for. A check that could not run
    is not a pass: 0 means every check ran and held."""
    if summary.get("halted"):
        return EXIT_HALTED
    expect = summary.get("expect")
    if (summary.get("invariant_violations") or summary.get("checks_not_run")
            or (expect is not None and not expect.get("passed"))):
        return EXIT_FAILED
    return EXIT_OK


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    from messages.jsonl import write_text_atomic

    write_text_atomic(path, json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n")


def comparable(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without times and ids: equal for two runs of the same scenario."""
    return {k: v for k, v in summary.items() if k not in VOLATILE_KEYS}


#: how a row reads: plain, or a verdict that went well / badly (coloured by the console)
GOOD, BAD = "good", "bad"


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """The readable end-of-run rows ``(what, value, verdict)``: one list for the
    console table and report.html, so the two never drift apart."""
    rows: list[tuple[str, str, str | None]] = [
        ("run", f"{summary.get('run_id')}  ({summary.get('started_at')} -> "
                f"{summary.get('ended_at')})", None)]
    if summary.get("scenario"):
        rows.append(("scenario", f"{summary['scenario']} ({summary.get('path')})", None))
    rows.append(("market events", f"{summary.get('market_events', 0):,}", None))
    rows.append(("signals", str(summary.get("signals", 0)), None))
    risk = summary.get("risk") or {}
    rej = risk.get("rejected") or {}
    rows.append(("risk", f"{risk.get('approved', 0)} approved, {sum(rej.values())} rejected"
                 + (": " + ", ".join(f"{k} {v}" for k, v in rej.items()) if rej else ""), None))
    rows.append(("orders", ", ".join(f"{k} {v}" for k, v in (summary.get("orders") or {}).items()),
                 None))
    stops = summary.get("stop_exits") or {}
    rows.append(("stop exits", f"limit {stops.get('limit', 0)}, "
                               f"market fallback {stops.get('market_fallback', 0)}", None))
    exits = {k: v for k, v in (summary.get("exits") or {}).items() if v}
    if exits:
        rows.append(("exit plans", ", ".join(f"{k.replace('_', ' ')} {v}"
                                             for k, v in exits.items()), None))
    rows.append(("hedges", str(summary.get("hedges", 0)), None))
    g = summary.get("groups")
    if g is not None:
        rows.append(("order groups", f"{g['submitted']} submitted: filled {g['filled']}, "
                     f"rolled back {g['rolled_back']}, failed {g['failed']} (residue to the "
                     f"hedger), rejected {g['rejected']}"
                     + (f", open {g['open']}" if g.get("open") else ""), None))
    ex = summary.get("exchange_positions")
    pos = ", ".join(f"{s} {q}" + ("" if ex is None or ex.get(s, "0") == q
                                  else f" (exchange {ex.get(s)})")
                    for s, q in (summary.get("positions") or {}).items() if q != "0") or "flat"
    rows.append(("positions", pos, None))
    pnl = summary.get("pnl") or {}
    rows.append(("pnl", f"realized {pnl.get('realized')}, unrealized {pnl.get('unrealized')}",
                 None))
    ks = summary.get("kill_switch")
    if ks is not None:
        rows.append(("kill switch", kill_switch_line(ks),
                     BAD if ks.get("state") == "HALTED" else None))
    rows.append(("restarts", ", ".join(f"{k} {v}" for k, v in
                                       (summary.get("restarts") or {}).items()) or "none", None))
    halted = summary.get("halted")
    if halted:
        rows.append(("HALTED", f"{halted.get('reason')}", BAD))
    bad = summary.get("invariant_violations") or []
    not_run = summary.get("checks_not_run") or {}
    if bad:
        rows.append(("invariants", f"{len(bad)} violated: "
                     + "; ".join(str(v.get("detail")) for v in bad[:5]), BAD))
    elif not_run:
        ran = len(summary.get("checks") or {}) - len(not_run)
        rows.append(("invariants", f"{ran} checked and held; NOT RUN: "
                     + "; ".join(f"{k} ({v})" for k, v in not_run.items()), BAD))
    else:
        rows.append(("invariants", "all held", GOOD))
    if "expect" in summary:
        e = summary["expect"]
        rows.append(("expect", "passed", GOOD) if e.get("passed") else
                    ("expect", "failed: " + "; ".join(map(str, e.get("failures") or [])), BAD))
    return rows


def summary_table(summary: Mapping[str, Any], title: str = "Tradewarden run") -> Table:
    """The readable end-of-run table (the JSON has everything)."""
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    colour = {GOOD: "green", BAD: "red"}
    for what, value, verdict in summary_rows(summary):
        text = Text(value, style=colour[verdict]) if verdict else Text(value)
        t.add_row(what, text)
    return t


def print_summary(summary: Mapping[str, Any], title: str, console: Console | None = None) -> None:
    (console or Console()).print(summary_table(summary, title))


def load_run_records(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events.jsonl records, audit.jsonl records) of a run directory; missing = empty."""
    from messages.jsonl import iter_jsonl

    def read(name: str) -> list[dict[str, Any]]:
        path = run_dir / name
        return list(iter_jsonl(path)) if path.exists() else []
    return read("events.jsonl"), read("audit.jsonl")


def collect_summary(rt: Any, *, started_at: str, ended_at: str,
                    extra: Mapping[str, Any] | None = None,
                    records: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
                    not_run: Mapping[str, str] | None = None,
                    more_violations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Summary of a stopped :class:`~app.launcher.Runtime`, invariants checked.

    ``records`` are the run's (events, audit) when the caller has read them
    already (the scenario runner needs them for its expect checks too).
    The exchange's positions are asked for here, through the broker adapter
    protocol, in every mode; when they cannot be read the comparison is
    reported as not run, with the reason. ``not_run``: further checks the
    caller knows cannot run (check -> why), e.g. the events-based ones when
    the exchange's record could not be copied. ``more_violations``: what the
    caller's own checks found (a hedge-mode venue run's legs, ``app.position_legs``)."""
    from app.invariants import check_all

    events, audit = records if records is not None else load_run_records(rt.spec.run_dir)
    start_positions = None
    if rt.external:  # a copy of a shared exchange's record (or none: a real venue)
        from app.run_events import remote_scope

        scope = remote_scope(rt.spec.run_dir, rt.config.exchange.account, events)
        if scope is not None:
            events, start_positions = scope
    coordinator = rt.info("coordinator")
    skipped = dict(not_run or {})
    exchange_positions, why = rt.query_exchange_positions()
    if exchange_positions is None:
        skipped["positions_match"] = f"the exchange's positions could not be read: {why}"
    system = rt.system
    dead = system.dead_letters.snapshot(recent=1000)["recent"]
    violations = check_all(
        events=events, audit=audit, positions=coordinator.get("positions") or {},
        exchange_positions=exchange_positions,
        hedging_accounts=frozenset(a for a, on in rt.config.risk.hedging_mode.items() if on),
        fail_closed=rt.config.risk.fail_closed_on_missing_positions, dead_letters=dead,
        start_positions=start_positions, not_run=skipped) + list(more_violations)
    market_events = int(rt.info("gateway").get("counts", {}).get("market_events", 0))
    return build_summary(run_id=rt.spec.run_id, started_at=started_at, ended_at=ended_at,
                         audit=audit, coordinator=coordinator, market_events=market_events,
                         exchange_positions=exchange_positions,
                         restarts=dict(system.restart_counts), violations=violations,
                         stops=rt.info("stops"), extra=extra, not_run=skipped)
