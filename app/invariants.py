"""Safety invariants checked after every run and scenario (DESIGN section 5).

Each check reads ground truth from outside the actors it judges: the
exchange's own ``events.jsonl`` (what really reached the venue), the audit
trail (what the coordinator decided), and the final positions on both sides.
A broken rule becomes one ``invariant_violations`` entry in summary.json:
``{"rule": ..., "detail": ...}``. The checks are pure functions of those
records, so tests can feed them hand-made records to prove each one fires.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

ZERO = Decimal(0)
#: one JSON record of events.jsonl, audit.jsonl or the dead-letter list
Record = Mapping[str, Any]
#: message types that must never end as dead letters (rule: orders are never dropped)
ORDER_FLOW_TYPES = frozenset({"Signal", "OrderIntent", "OrderRequest", "SubmitOrder", "CancelOrder",
                              "CancelIntent", "OrderAcked", "OrderRejected", "OrderFilled",
                              "CancelConfirmed", "OrderExpired", "Put", "Durable"})


def violation(rule: str, detail: str, **facts: Any) -> dict[str, Any]:
    return {"rule": rule, "detail": detail, **facts}


def single_door(events: Iterable[Record], audit: Iterable[Record]) -> list[dict[str, Any]]:
    """Rule 1: every order the exchange received was approved by the gate, once."""
    approved = Counter(r.get("client_order_id") for r in audit
                       if r.get("kind") == "risk_decision" and r.get("approved"))
    out = []
    for coid, n in approved.items():
        if coid is not None and n > 1:
            out.append(violation("single_door", f"client order id {coid} approved {n} times",
                                 client_order_id=coid))
    for ev in events:
        if ev.get("kind") == "order_submitted" and ev.get("client_order_id") not in approved:
            out.append(violation("single_door",
                                 f"order {ev.get('client_order_id')} reached the exchange "
                                 "without an approved risk decision",
                                 client_order_id=ev.get("client_order_id"), seq=ev.get("seq")))
    return out


def netting(events: Iterable[Record], hedging_accounts: frozenset[str] = frozenset(),
            start: Mapping[tuple[str, str], Decimal] | None = None) -> list[dict[str, Any]]:
    """Rule 2 (and rule 8's "exit never exceeds the position"): replaying the
    exchange's fills, no fill may take a position from one side to the other.
    ``start``: (account, symbol) -> position before the first event (a run on
    an exchange that outlives runs does not start flat)."""
    pos: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    pos.update(start or {})
    seen: set[str | None] = set()
    out = []
    for ev in events:
        if ev.get("kind") != "order_filled":
            continue
        fid = ev.get("fill_id")
        if fid in seen:
            continue  # the venue's duplicate report; the position moved once
        seen.add(fid)
        account = ev.get("account") or "default"
        key = (account, ev["symbol"])
        qty = Decimal(str(ev["qty"]))
        before = pos[key]
        after = before + (qty if ev["side"] == "buy" else -qty)
        pos[key] = after
        if account in hedging_accounts:
            continue
        if before != 0 and after != 0 and (before > 0) != (after > 0):
            out.append(violation("netting",
                                 f"{ev['symbol']}: fill {fid} of order {ev.get('client_order_id')} "
                                 f"took the position from {before} to {after} (both sides)",
                                 symbol=ev["symbol"], seq=ev.get("seq")))
    return out


def unique_orders(events: Iterable[Record]) -> list[dict[str, Any]]:
    """Rule 15: a client order id is accepted by the exchange at most once."""
    acked = Counter(ev.get("client_order_id") for ev in events if ev.get("kind") == "order_acked")
    return [violation("unique_client_order_ids", f"order {coid} accepted {n} times",
                      client_order_id=coid)
            for coid, n in acked.items() if n > 1]


def positions_match(ours: Mapping[str, Any], broker: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rules 9-11: at the end, the runtime's positions equal the exchange's."""
    out = []
    for sym in sorted(set(ours) | set(broker)):
        a, b = Decimal(str(ours.get(sym, 0))), Decimal(str(broker.get(sym, 0)))
        if a != b:
            out.append(violation("positions_match",
                                 f"{sym}: runtime holds {a}, the exchange {b}", symbol=sym))
    return out


def gate_respected(audit: Iterable[Record], *, fail_closed: bool = True) -> list[dict[str, Any]]:
    """Rules 3 and 5 read back from the audit trail: no risk-increasing order
    approved while halted, or without fresh positions when failing closed."""
    out = []
    halted = False
    for rec in audit:
        kind = rec.get("kind")
        if kind == "kill_switch":
            halted = rec.get("reason") == "engaged"
            continue
        if kind != "risk_decision" or not rec.get("approved") or rec.get("risk_reducing"):
            continue
        inputs = rec.get("inputs") or {}
        if halted or inputs.get("trading_state") == "HALTED":
            out.append(violation("kill_switch", "risk-increasing order approved while halted",
                                 client_order_id=rec.get("client_order_id")))
        if fail_closed and inputs.get("positions_fresh") is False:
            out.append(violation("fail_closed",
                                 "risk-increasing order approved without fresh positions",
                                 client_order_id=rec.get("client_order_id")))
    return out


def _group_of_tag(tag: Any) -> tuple[str, str] | None:
    """(group id, leg | unwind) from an order group's intent tag
    (``<group>|<seq>|<kind>|<leg>|<side>|<qty>``, ``trading.group_state.make_tag``)."""
    parts = tag.split("|") if isinstance(tag, str) else []
    if len(parts) == 6 and parts[2] in ("leg", "unwind"):
        return parts[0], parts[2]
    return None


def group_leg_order(events: Iterable[Record], audit: Iterable[Record]) -> list[dict[str, Any]]:
    """Rule 6: within an order group, no leg reaches the exchange before every leg
    of a higher priority did (protective and long legs, then hedges and covered
    shorts, naked shorts last): a short that went out while its protection was
    refused or still on its way is exactly the naked short the rule prevents.

    The roles come from the group's ``submitted`` audit record (its legs, one
    per symbol); an order's group from the exchange's own ``order_submitted``
    record (``group_id``), else from the gate's decision (the intent tag).
    Unwinds (purpose ``rollback``) run in the opposite order and are not judged.
    """
    # keyed as the records carry them (a record without a group id is None)
    priority: dict[str | None, dict[str, int]] = {}
    role: dict[str | None, dict[str, str]] = {}
    unwinds: set[str] = set()
    group_of: dict[str | None, str] = {}
    for rec in audit:
        kind = rec.get("kind")
        if kind == "group_decision" and rec.get("reason") == "submitted":
            legs = (rec.get("inputs") or {}).get("legs") or []
            gid = rec.get("group_id")
            priority[gid] = {leg["symbol"]: int(leg["priority"]) for leg in legs}
            role[gid] = {leg["symbol"]: str(leg.get("role")) for leg in legs}
        elif kind == "risk_decision" and rec.get("approved") and rec.get("client_order_id"):
            coid = rec["client_order_id"]
            tagged = _group_of_tag(rec.get("tag"))
            if tagged is not None:
                group_of[coid] = tagged[0]
            if (rec.get("inputs") or {}).get("purpose") == "rollback" or (
                    tagged is not None and tagged[1] == "unwind"):
                unwinds.add(coid)
    sent: set[tuple[str | None, str]] = set()
    out = []
    for ev in events:
        if ev.get("kind") != "order_submitted" or ev.get("client_order_id") in unwinds:
            continue
        gid = ev.get("group_id") or group_of.get(ev.get("client_order_id"))
        legs = priority.get(gid)
        sym = ev.get("symbol")
        if legs is None or sym not in legs or (gid, sym) in sent:
            continue
        early = sorted(s for s, p in legs.items() if p < legs[sym] and (gid, s) not in sent)
        if early:
            out.append(violation(
                "group_leg_order",
                f"group {gid}: {sym} ({role[gid][sym]}) reached the exchange before "
                + ", ".join(f"{s} ({role[gid][s]})" for s in early),
                group_id=gid, client_order_id=ev.get("client_order_id"), seq=ev.get("seq")))
        sent.add((gid, sym))
    return out


def no_lost_orders(dead_letters: Iterable[Record]) -> list[dict[str, Any]]:
    """Order, fill and control messages are never dropped (DESIGN section 2)."""
    return [violation("order_flow_dead_letter",
                      f"{d.get('type')} for {d.get('target')} became a dead letter ({d.get('reason')})",
                      to=d.get("target"))
            for d in dead_letters
            if d.get("type") in ORDER_FLOW_TYPES and d.get("reason") != "shutdown"]


#: every check, by the ``rule`` names its violations carry
CHECKS: dict[str, tuple[str, ...]] = {
    "single_door": ("single_door",),
    "netting": ("netting",),
    "unique_client_order_ids": ("unique_client_order_ids",),
    "positions_match": ("positions_match",),
    "gate_respected": ("kill_switch", "fail_closed"),
    "group_leg_order": ("group_leg_order",),
    "no_lost_orders": ("order_flow_dead_letter",),
}
#: the checks that read the exchange's own record (events.jsonl)
EVENT_CHECKS = ("single_door", "netting", "unique_client_order_ids", "group_leg_order")


def check_all(*, events: Sequence[Record], audit: Sequence[Record], positions: Mapping[str, Any],
              exchange_positions: Mapping[str, Any] | None, hedging_accounts: frozenset[str],
              fail_closed: bool, dead_letters: Sequence[Record],
              start_positions: Mapping[tuple[str, str], Decimal] | None = None,
              not_run: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every invariant, except those named in ``not_run`` (check -> why it
    could not run; :func:`check_statuses` reports them as not run, never as
    held). ``exchange_positions`` None skips the comparison: the caller then
    names ``positions_match`` in ``not_run`` with the reason. ``start_positions``
    as for :func:`netting`."""
    skip = not_run or {}
    out: list[dict[str, Any]] = []
    if "single_door" not in skip:
        out += single_door(events, audit)
    if "netting" not in skip:
        out += netting(events, hedging_accounts, start_positions)
    if "unique_client_order_ids" not in skip:
        out += unique_orders(events)
    if exchange_positions is not None and "positions_match" not in skip:
        out += positions_match(positions, exchange_positions)
    if "gate_respected" not in skip:
        out += gate_respected(audit, fail_closed=fail_closed)
    if "group_leg_order" not in skip:
        out += group_leg_order(events, audit)
    if "no_lost_orders" not in skip:
        out += no_lost_orders(dead_letters)
    return out


def check_statuses(violations: Iterable[Record], not_run: Mapping[str, str]) -> dict[str, str]:
    """Each check's verdict: ``held``, ``violated`` or ``not_run``."""
    broken = {v.get("rule") for v in violations}
    return {name: ("not_run" if name in not_run else
                   "violated" if broken.intersection(rules) else "held")
            for name, rules in CHECKS.items()}
