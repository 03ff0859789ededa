"""The orderly halt after the root supervisor failed (DESIGN section 2).

"Kill switch on, alert sent, state flushed." By the time the root fails it
has already stopped every child in reverse order (the market first,
persistence last, which commits what it held), so messages to them would sit
in mailboxes nobody reads. Trading is over either way: the coordinator, the
only door to the broker, is gone. What the halt adds is that people and the
records learn of it. For each of the three, the running actor gets the
message if it still runs; otherwise the launcher does the work itself:

* kill switch: an audit record (kind ``kill_switch``, reason ``engaged``),
  the same record the coordinator writes, so ``audit``, the summary's
  kill-switch figures and the gate invariant see the halt;
* alert: sent straight to the configured sinks (log, webhook, ...), once,
  on this thread; the sinks' own timeouts bound the wait;
* flush: the halt itself goes into the store's ``meta`` (key ``halt``) in
  one synced transaction. The persistence actor is stopped, so this is
  still the only writer.

A resumed run (``run --resume``) reports the earlier halt and comes back with
the kill switch engaged (``meta/kill_switch``): exits still go through, new
risk waits until an operator releases it (``main.py kill-switch off``), and
the reconciliation at startup settles whatever the crash loop left in flight.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from loguru import logger

HALT_KEY = "halt"


def _running(system: Any, name: str) -> bool:
    cell = system.directory.get(name)
    return cell is not None and cell.running


def orderly_halt(rt: Any, reason: str) -> None:
    """Called from the actor system's halt hook with the launcher's Runtime."""
    from messages.alerts import Alert
    from messages.control import KillSwitch
    from messages.persistence import Flush, Put, StoreDb

    system = rt.system
    now = system.clock.now()
    logger.critical("runtime halted: {}", reason)
    why = f"halt: {reason}"
    if _running(system, "coordinator"):
        system.tell("coordinator", KillSwitch(True, why, now))
    elif rt.audit is not None:
        try:
            rt.audit.record(kind="kill_switch", reason="engaged", ts=now, inputs={"why": why},
                            source="runtime")
            rt.audit.flush()
        except OSError as exc:  # a full disk: the alert and the summary still tell
            logger.error("could not write the halt to audit.jsonl: {}", exc)
    alert = Alert("critical", "runtime halted", reason, now, "runtime")
    if _running(system, "alerts"):
        system.tell("alerts", alert)
    else:
        _alert_directly(rt, alert)
    from trading.recovery import KILL_SWITCH_KEY

    record = {"reason": reason, "at": now}
    # The kill switch stays engaged in the store too: a resumed run comes back
    # halted, consistent with the audit trail, until an operator releases it.
    writes = ((HALT_KEY, record), (KILL_SWITCH_KEY, why))
    if _running(system, "persistence"):
        for key, value in writes:
            system.tell("persistence", Put(StoreDb.META, key, value))
        system.tell("persistence", Flush(ack=Future()))
    elif rt.store is not None:
        from trading.store import put_op

        try:
            rt.store.apply([put_op(StoreDb.META, k, v) for k, v in writes])
        except Exception:  # noqa: BLE001 - the halt goes on; the log has the reason
            logger.exception("could not record the halt in the store")


def _alert_directly(rt: Any, alert: Any) -> None:
    from app.alert_sinks import sinks_from_config

    try:
        sinks = sinks_from_config(rt.config.alerts.sink_entries())
    except ValueError:
        logger.exception("halt alert: bad sink configuration")
        return
    for sink in sinks:
        try:
            if sink.ready_reason() is None:
                sink.send(alert)
            else:
                logger.error("halt alert not sent to {}: {}", sink, sink.ready_reason())
        except Exception as exc:  # noqa: BLE001 - one broken sink must not stop the others
            logger.error("halt alert not delivered to {}: {}", sink, exc)
