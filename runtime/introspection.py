"""A plain-data picture of a running system: every actor, its supervisor,
its mailbox figures, restarts and last failure, plus dead letters.

This is what ``/actors`` serves and ``inspect`` prints. With ``peek`` it
includes a short, redacted summary of the first waiting messages of each
mailbox, which is what someone debugging a stuck actor wants to see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.directory import summarize

if TYPE_CHECKING:
    from runtime.system import ActorSystem


def info_of(system: Any, name: str) -> dict[str, Any]:
    """A copy of the figures the actor called ``name`` last published ({} if none)."""
    cell = system.directory.get(name) if system is not None else None
    return dict(cell.info) if cell is not None else {}


def snapshot(system: ActorSystem, *, peek: int = 0) -> dict[str, Any]:
    actors = []
    supervisors = []
    for cell in system.directory.cells():
        entry: dict[str, Any] = {
            "name": cell.name,
            "kind": cell.kind,
            "execution": cell.execution,
            "dispatcher": cell.mailbox.dispatcher.name if cell.mailbox.dispatcher else None,
            "supervisor": cell.supervisor,
            "state": cell.state,
            "incarnation": cell.incarnation,
            "restarts": cell.restarts,
            "failures": cell.failures,
            "last_failure": cell.last_failure,
        }
        entry.update(cell.mailbox.figures())
        if peek:
            entry["waiting"] = [
                {"type": type(m).__name__, "summary": summarize(m)} for m in cell.mailbox.peek(peek)
            ]
        if cell.kind == "Supervisor":
            supervisors.append({"name": cell.name, "supervisor": cell.supervisor, **cell.info})
        elif cell.info:
            entry["info"] = cell.info
        actors.append(entry)
    return {
        "system": system.name,
        "clock": {"virtual": system.clock.is_virtual, "now": system.clock.now().isoformat(),
                  "monotonic": system.clock.monotonic()},
        "halted": system.halted,
        "halt_reason": system.halt_reason,
        "actors": actors,
        "supervisors": supervisors,
        "dead_letters": system.dead_letters.snapshot(),
        "executor": system.executor.snapshot(),
        "dispatchers": [system.dispatcher.snapshot()],
        "timers": {"pending": system.timers.pending(), "fired": system.timers.fired},
        "restarts": dict(system.restart_counts),
    }
