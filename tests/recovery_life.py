"""A runtime that dies and comes back, for the crash-recovery tests.

``Life`` runs one account's runtime on a virtual clock with the in-process
simulated exchange; ``crash()`` is ``Runtime.kill()`` (every waiting message
dropped, as if the process died) and ``start()`` builds a new runtime on the
same store, the same clock and the same exchange engine, which outlives the
runtime as a venue would. Ground truth comes from outside the coordinator:
the exchange's ``events.jsonl``, the audit trail, the engine and the store.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal as D
from pathlib import Path
from typing import Any


from config import config_hash, load_config
from exchange.events_log import read_events
from messages.enums import Side
from messages.market import Quote
from messages.orders import Signal
from messages.persistence import StoreDb
from app import invariants
from runtime.clock import EPOCH_DEFAULT, VirtualClock
from app.launcher import LaunchSpec, Runtime
from trading.store import Store
from trading.audit import read_audit
from trading.limits import Limits

BTC = "BTCUSDT"
DEEP = D("1000000")


def poison_quote(ts: Any) -> Quote:
    """A quote whose symbol is a list: it passes no validation (built around
    it) and crashes the handler that looks the symbol up."""
    bad = object.__new__(Quote)
    for name, value in {"symbol": ["POISON"], "bid": D(1), "ask": D(1), "ts": ts,
                        "bid_size": D(0), "ask_size": D(0)}.items():
        object.__setattr__(bad, name, value)
    return bad


class Life:
    """One account's runtime across crashes: same store, same exchange, same clock."""

    def __init__(self, run_dir: Path, *, exchange: dict | None = None,
                 config: dict | None = None) -> None:
        overrides: dict[str, Any] = {"strategy": {"name": "none"}}
        overrides.update(config or {})
        self.config = load_config(overrides=overrides)
        self.clock = VirtualClock(EPOCH_DEFAULT)
        self.run_dir = run_dir
        self.exchange = dict(exchange or {"latency_ms": 5})
        self.engine: Any = None
        self.rt: Runtime | None = None
        self.lives = 0

    # -- lifecycle --------------------------------------------------------------------

    def start(self, *, settle_s: float = 1.0) -> Life:
        self.lives += 1
        spec = LaunchSpec(self.config, self.run_dir, (BTC,), self.clock, run_id=f"life{self.lives}",
                          config_hash=config_hash(self.config), engine=self.engine,
                          exchange_spec=self.exchange if self.engine is None else {})
        self.rt = Runtime(spec).start()
        self.engine = self.rt.engine
        if settle_s:
            self.advance(settle_s)
        return self

    def crash(self) -> None:
        self.rt.kill()
        self.rt = None

    def stop(self) -> None:
        if self.rt is not None and not self.rt.system._shut:
            self.rt.stop()

    @property
    def system(self) -> Any:
        return self.rt.system

    def advance(self, seconds: float) -> None:
        if self.rt is None:
            self.clock.advance_to(self.clock.monotonic() + seconds)
        else:
            self.system.advance(seconds)

    def settle(self) -> None:
        self.system.wait_quiescent()

    # -- input --------------------------------------------------------------------------

    def quote(self, bid: str = "100.0", ask: str = "100.1", size: D = DEEP) -> None:
        q = Quote(BTC, D(bid), D(ask), self.clock.now(), bid_size=size, ask_size=size)
        if self.rt is None:  # the market moves on while the runtime is down
            self.engine.handle(q, self.clock.now())
        else:
            self.system.tell("venue", q)
            self.advance(0.5)

    def signal(self, side: str, qty: Any, **kw: Any) -> None:
        self.system.tell("coordinator", Signal(BTC, Side(side), D(qty), self.clock.now(), **kw))
        self.settle()

    def poison(self, actor: str) -> None:
        self.system.tell(actor, poison_quote(self.clock.now()))

    # -- reading -------------------------------------------------------------------------

    @property
    def coord(self) -> dict[str, Any]:
        return self.rt.info("coordinator")

    def position(self) -> D:
        return D(self.coord["positions"].get(BTC, "0"))

    def exchange_position(self) -> D:
        return self.engine.position(BTC)

    def events(self, kind: str | None = None, coid: str | None = None) -> list[dict]:
        return [e for e in read_events(self.run_dir / "events.jsonl")
                if (kind is None or e["kind"] == kind)
                and (coid is None or e.get("client_order_id") == coid)]

    def audit(self, kind: str | None = None, coid: str | None = None) -> list[dict]:
        if self.rt is not None:
            self.settle()
        return [r for r in read_audit(self.run_dir / "audit.jsonl")
                if (kind is None or r.get("kind") == kind)
                and (coid is None or r.get("client_order_id") == coid)]

    def approved(self) -> list[str]:
        return [r["client_order_id"] for r in self.audit("risk_decision") if r["approved"]]

    def stored(self, coid: str) -> tuple[str | None, str | None]:
        """(status in the order record, status in meta) as on disk."""
        store = Store.open(self.run_dir)
        try:
            rec = store.get(StoreDb.ORDERS, coid)
            return (rec or {}).get("status"), store.get(StoreDb.META, f"order_status|{coid}")
        finally:
            store.close()

    def violations(self) -> list[dict]:
        return invariants.check_all(
            events=self.events(), audit=self.audit(), positions=self.coord["positions"],
            exchange_positions={k: str(v) for k, v in self.engine.positions().items()},
            hedging_accounts=Limits.from_config(self.config.risk).hedging_accounts,
            fail_closed=self.config.risk.fail_closed_on_missing_positions,
            dead_letters=[])


def accepted_once(lf: Life) -> None:
    """Rule 15, read from the exchange: no client order id accepted twice, and
    every id it accepted was approved by the gate exactly once."""
    acks = Counter(e["client_order_id"] for e in lf.events("order_acked"))
    assert [c for c, n in acks.items() if n > 1] == []
    approved = Counter(lf.approved())
    assert all(approved[c] == 1 for c in acks), (acks, approved)
    assert invariants.unique_orders(lf.events()) == []
