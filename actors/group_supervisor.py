"""``groups``: the supervisor of the order groups, and their front door.

DESIGN section 2 draws ``group-<id>`` under the coordinator. The coordinator
is a plain actor, not a supervisor, and a supervisor that also decided risk
would couple a group's crash to the single door; so the groups live under
their own ``one_for_one`` supervisor, a root child placed right after the
coordinator (started after it, stopped before it). It is a
:class:`~runtime.supervisor.Supervisor` with one more message:

* ``SubmitGroup(spec)``: validate the spec (``trading.group_spec``), refuse a
  duplicate id, and start ``group-<id>`` as a ``transient`` child: restarted
  after a crash, forgotten once it ends normally (settled).
* on start (also after a runtime crash): every group record in the store
  that has not settled is resumed, so in-flight groups finish or roll back
  (rule 10) instead of being forgotten.

Refused specs are audited (``group_decision``, through the coordinator, the
audit trail's single writer) and never start an actor.
"""

from __future__ import annotations

from typing import Any

from actors.order_group import OrderGroup
from messages.control import GroupAudit, SubmitGroup
from messages.persistence import StoreDb
from runtime.actor import handles
from runtime.signals import StartChild
from runtime.supervisor import ChildSpec, Supervisor, SupervisorSpec
from trading.group_rebuild import KEY_PREFIX
from trading.group_settings import GroupSettings
from trading.group_spec import GroupSpecError, parse_group

NAME = "groups"


class GroupsSupervisor(Supervisor):
    def __init__(self, ctx, spec: SupervisorSpec, *, settings: GroupSettings = GroupSettings(),
                 account: str = "default", coordinator: str = "coordinator",
                 group_shutdown_s: float = 5.0) -> None:
        super().__init__(ctx, spec)
        self.settings, self.account, self.coordinator = settings, account, coordinator
        self.group_shutdown_s = group_shutdown_s
        self.submitted = 0
        self.refused = 0
        self.id_seq = 0

    def on_start(self) -> None:
        super().on_start()
        store = self.ctx.services.get("store")
        for key, rec in (store.items(StoreDb.GROUPS, KEY_PREFIX) if store is not None else []):
            if isinstance(rec, dict) and not rec.get("settled"):
                gid = key[len(KEY_PREFIX):]
                self.log.info("resuming order group {} ({})", gid, rec.get("state"))
                self._start_group(gid, None, resume=True)

    @handles(SubmitGroup)
    def on_submit(self, msg: SubmitGroup) -> None:
        spec = msg.spec if isinstance(msg.spec, dict) else {}
        try:
            default_id = None if spec.get("id") else self._next_id(str(spec.get("kind") or "group"))
            group = parse_group(spec, default_id=default_id, default_account=self.account)
        except GroupSpecError as exc:
            self._refuse(str(spec.get("id") or "?"), "invalid_group", str(exc), msg)
            return
        if self._taken(group.group_id):
            self._refuse(group.group_id, "duplicate_group",
                         f"group {group.group_id} was already submitted", msg)
            return
        self.submitted += 1
        self._start_group(group.group_id, group, resume=False)

    def _start_group(self, gid: str, group: Any, *, resume: bool) -> None:
        self.on_start_child(StartChild(ChildSpec(
            f"group-{gid}", OrderGroup, restart="transient", shutdown_s=self.group_shutdown_s,
            kwargs={"group_id": gid, "spec": group, "settings": self.settings,
                    "resume": resume})))

    def _next_id(self, kind: str) -> str:
        """``<kind>-<n>``: unique among running groups and the store's records."""
        while True:
            self.id_seq += 1
            gid = f"{kind}-{self.id_seq}"
            if not self._taken(gid):
                return gid

    def _taken(self, gid: str) -> bool:
        """A group of that id is running, or the store has its record (settled or not)."""
        store = self.ctx.services.get("store")
        return self._child(f"group-{gid}") is not None or (
            store is not None and store.get(StoreDb.GROUPS, KEY_PREFIX + gid) is not None)

    def _refuse(self, gid: str, reason: str, why: str, msg: SubmitGroup) -> None:
        self.refused += 1
        self.log.error("order group {} refused ({}): {}", gid, reason, why)
        self.ctx.tell(self.coordinator, GroupAudit(gid, reason, "rejected", False,
                                                   {"error": why}, msg.ts))

    def _publish(self) -> None:
        super()._publish()
        self.ctx.cell.info = {**self.ctx.cell.info,
                              "submitted": getattr(self, "submitted", 0),
                              "refused": getattr(self, "refused", 0)}


def groups_child(settings: GroupSettings, *, account: str, intensity: int = 5,
                 period_s: float = 60.0, shutdown_s: float = 30.0) -> ChildSpec:
    """The ``groups`` supervisor as a root child (see ``app.launch_tree.root_tree``)."""
    spec = SupervisorSpec(NAME, [], strategy="one_for_one", intensity=intensity,
                          period_s=period_s, shutdown_s=shutdown_s)
    return ChildSpec(NAME, GroupsSupervisor, args=(spec,),
                     kwargs={"settings": settings, "account": account}, shutdown_s=shutdown_s)
