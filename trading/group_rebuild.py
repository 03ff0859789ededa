"""An order group after a restart: ``rebuild_group(snapshot, key, owner) -> RebuiltGroup``.

The house style of a restart-safe order owner (see ``trading.stop_rebuild``):
the group's record is written after every message, *before* the orders that
message decided leave (write, then send); a restarted group rebuilds from
its record plus the coordinator's own order, status and fill records
(``trading.owned_orders``), adopting any order the gate approved for it
that the record missed, so a restart neither repeats a leg nor forgets one.
Pure: the group actor re-arms its timers and drives the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from messages.enums import OrderPurpose
from trading.group_state import LEG, UNWIND, Group, GroupOrder
from trading.owned_orders import Snapshot, catch_up, owned_orders

KEY_PREFIX = "group|"


@dataclass
class RebuiltGroup:
    #: None: no record (or an unreadable one)
    group: Group | None
    #: why the record could not be read (None: read, or there was none)
    unreadable: Exception | None = None
    #: client order ids adopted from the coordinator's records
    adopted: list[str] = field(default_factory=list)


def rebuild_group(snapshot: Snapshot, key: str, owner: str) -> RebuiltGroup:
    """The group stored under ``key`` (in ``groups``), caught up with the
    coordinator's records of ``owner``'s orders."""
    rec = snapshot.get("groups", {}).get(key)
    if rec is None:
        return RebuiltGroup(None)
    try:
        g = Group.from_record(rec)
    except (KeyError, TypeError, ValueError) as exc:
        return RebuiltGroup(None, exc)
    catch_up(snapshot, g.orders)
    return RebuiltGroup(g, adopted=adopt_orders(g, snapshot, owner))


def adopt_orders(g: Group, snapshot: Snapshot, owner: str) -> list[str]:
    """Orders the gate approved for ``owner`` that ``g`` missed (it died before the
    acceptance arrived): matched to the pending intent by leg, kind and quantity."""
    adopted = []
    for coid, owned in owned_orders(snapshot, owner).items():
        if coid in g.orders:
            continue
        req = owned.request
        kind = UNWIND if req.purpose is OrderPurpose.ROLLBACK else LEG
        leg = next((x.index for x in g.legs if x.symbol == req.symbol), None)
        if leg is None:
            continue
        tag = next((t for t, p in g.pending.items() if p.kind == kind and p.leg == leg
                    and p.qty == req.qty), None)
        sent_at = g.pending.pop(tag).sent_at if tag else req.ts
        o = g.orders[coid] = GroupOrder(kind, leg, req.side.value, req.qty, sent_at,
                                        dict(owned.fills), owned.closed)
        if o.filled >= o.qty:
            o.close("filled")
        adopted.append(coid)
    return adopted
