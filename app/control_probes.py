"""What the control endpoint's probes report: liveness (``/healthz``) and readiness (``/readyz``).

Kubernetes' split: liveness asks whether restarting the process would help
(only when the root supervisor gave up), readiness whether the runtime can
trade now, and if not, why. Both read published figures (``cell.info``) and
the system's own state only; they never send a message to an actor, so a
stuck actor cannot hang a probe. What they return is redacted
(:func:`app.control_access.redact_data`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.control_access import redact_data
from app.metrics import number, system_of
from runtime.introspection import info_of
from runtime.redact import redact_text


def liveness(target: Any) -> tuple[bool, dict[str, Any]]:
    """``/healthz`` (Kubernetes liveness): is the process still supervising its actors?

    Only a runtime whose root supervisor gave up (halted) is dead: restarting
    the process is then the cure. A halted kill switch, a lost stream or a
    reconciliation is not (see :func:`health`, ``/readyz``): restarting for
    those would only add a recovery to the trouble."""
    system = system_of(target)
    if system is None:
        return True, {"live": True, "state": "starting"}
    if system.halted:
        return False, {"live": False, "state": "halted",
                       "reason": redact_text(str(system.halt_reason))}
    return True, {"live": True, "state": "supervising"}


def health(target: Any) -> tuple[bool, dict[str, Any]]:
    """``/readyz`` (readiness): whether the runtime can trade now, and why not
    (halted, kill switch, recovering, breaker open, stream down or reconciling)."""
    system = system_of(target)
    if system is None:
        return False, {"ok": False, "reasons": ["runtime not started"]}
    c = info_of(system, "coordinator")
    gw = info_of(system, "gateway")
    rec = info_of(system, "reconciler")
    reasons = []
    state = c.get("trading_state")
    if system.halted:
        reasons.append(f"runtime halted: {system.halt_reason}")
    if state != "ACTIVE":
        reasons.append(f"trading state {state}" + (f" ({c['kill_reason']})"
                                                   if c.get("kill_reason") else ""))
    if c.get("recovering"):
        reasons.append("recovering")
    if c.get("breaker") == "open":
        reasons.append("circuit breaker open")
    if not gw.get("connected"):
        reasons.append("exchange stream disconnected")
    elif gw.get("stream_reconciling"):
        reasons.append("exchange stream reconciling")
    last = rec.get("last_reconciled")
    age = None
    if last:
        try:
            age = round((system.clock.now() - datetime.fromisoformat(last)).total_seconds(), 3)
        except (TypeError, ValueError):
            age = None
    body = {
        "ok": not reasons,
        "reasons": reasons,
        "trading_state": state,
        "kill_reason": c.get("kill_reason"),
        "breaker": c.get("breaker"),
        "halted": system.halted,
        "connectivity": {"connected": bool(gw.get("connected")),
                         "stream_reconciling": bool(gw.get("stream_reconciling")),
                         "last_msg_age_s": number(gw.get("last_msg_age_s"))},
        "reconciliation": {"last_reconciled": last, "age_s": age, "polls": rec.get("polls", 0),
                           "recovered": rec.get("recovered")},
        "clock": system.clock.now().isoformat(),
    }
    return not reasons, redact_data(body)
