"""Nothing on the order path waits, and the audit trail never loses a record.

The coordinator only queues a record; the persistence actor drains the queue
into every commit, so an approval's record is durable (in the store, in the
same LMDB transaction, or in the fsynced audit file) no later than the order
intent it belongs to, and the order leaves only after that. A restart puts
back into audit.jsonl what only the store kept, with the hash chain intact.
Client order ids come by request/reply: intents that find none are parked.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from actors.persistence import PersistenceActor
from app.audit_cli import held_in_store
from messages.persistence import Flush, StoreDb
from runtime import ChildSpec
from tests.test_coordinator import BTC, ETH, SOL, Rig
from trading.audit import AuditLog, read_audit, verify_audit
from trading.store import Store


def durable_approvals(store: Store, audit: AuditLog, path: Path) -> set[str]:
    """Client order ids whose approval a power cut now would not lose: its
    record is committed in the store, or in the audit file up to its last fsync."""
    held = [json.loads(line) for _, line in store.items(StoreDb.AUDIT)]
    synced = [r for r in read_audit(path) if r["seq"] <= audit.synced_seq]
    return {r["client_order_id"] for r in held + synced
            if r["kind"] == "risk_decision" and r["approved"]}


def test_an_approved_order_reaches_the_exchange_only_after_its_audit_record_is_durable(
        tmp_path: Path) -> None:
    # a file sync (and the store forgetting what it synced) every 3 records, so
    # both places a durable record can be in are exercised
    rig = Rig(tmp_path / "run", config={"runtime": {"persistence": {"audit_sync_every": 3}}})
    rig.start()
    try:
        engine, store, audit = rig.rt.engine, rig.rt.store, rig.rt.audit
        path = rig.run_dir / "audit.jsonl"
        at_exchange: list[tuple[str, bool]] = []
        submit = engine.submit

        def submit_seen(order: Any, now: Any, **kw: Any) -> Any:
            coid = order.client_order_id
            at_exchange.append((coid, coid in durable_approvals(store, audit, path)))
            return submit(order, now, **kw)

        engine.submit = submit_seen
        rig.quote()
        for i in range(12):
            rig.signal("buy" if i % 2 == 0 else "sell", 1)
            rig.advance(0.2)
        rig.advance(1)
        assert len(at_exchange) == 12
        not_durable = [coid for coid, durable in at_exchange if not durable]
        assert not_durable == [], f"orders at the exchange before their audit record was durable: {not_durable}"
        assert audit.synced_seq >= 12  # the file was synced along the way ...
        assert store.count(StoreDb.AUDIT) < audit.written_seq  # ... and the store pruned
    finally:
        rig.stop()
    n, broken = verify_audit(path)
    assert broken is None and n == len(list(read_audit(path)))


def test_records_only_the_store_kept_are_put_back_in_the_file_on_restart(
        harness_factory: Any, tmp_path: Path) -> None:
    """A process killed with audit lines in its buffer: the store has them (they
    were committed with the intents), the file does not. The next start appends
    them before anything new, so the chain and the sequence hold."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, run_id="r", app_version="t", config_hash="h")
    h = harness_factory(ChildSpec("persistence", PersistenceActor,
                                  kwargs={"run_dir": tmp_path, "audit": audit}))
    for i in range(6):
        audit.record(kind="risk_decision", reason="approved", ts=h.system.clock.now(),
                     approved=True, inputs={"qty": str(i)}, client_order_id=f"c{i}")
    audit.flush()  # the burst ends: persistence commits the records
    h.system.wait_quiescent()
    with Store.open(tmp_path) as store:
        assert store.count(StoreDb.AUDIT) == 6
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == 6
    # the kill: the last three lines never left the process, the fourth is torn
    path.write_text("".join(lines[:2]) + lines[2][:40], encoding="utf-8")
    h.system.shutdown()
    assert held_in_store(tmp_path, 2) == 4  # `audit verify` says where they are meanwhile

    again = AuditLog(path, run_id="r2", app_version="t", config_hash="h")
    h2 = harness_factory(ChildSpec("persistence", PersistenceActor,
                                   kwargs={"run_dir": tmp_path, "audit": again}))
    again.record(kind="risk_decision", reason="approved", ts=h2.system.clock.now(),
                 approved=True, inputs={"qty": "6"}, client_order_id="c6")
    again.flush()
    h2.system.wait_quiescent()
    records = list(read_audit(path))
    assert [r["seq"] for r in records] == list(range(1, 8))
    assert [r["client_order_id"] for r in records] == [f"c{i}" for i in range(7)]
    assert verify_audit(path) == (7, None)
    with Store.open(tmp_path) as store:  # the file was synced at the restart: the store forgot them
        assert [int(k) for k, _ in store.items(StoreDb.AUDIT)] == [7]


def test_a_drained_batch_masks_secrets_and_keeps_the_line_format(tmp_path: Path) -> None:
    """One batch, one secret-like field in its middle record: that value is
    masked, every line is plain compact JSON with ``prev_hash`` after ``seq``
    (as ``audit verify`` and older readers expect), and the chain holds."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, run_id='odd","timestamp":"id', app_version="t", config_hash="h")
    audit.attach(lambda: None, [])
    ts = datetime(2026, 1, 5, tzinfo=UTC)
    for i in range(3):
        inputs: dict[str, Any] = {"n": i}
        if i == 1:
            inputs["api_key"] = "sk-live-123"
        audit.record(kind="risk_decision", reason="approved", ts=ts, inputs=inputs)
    drained = audit.drain()
    audit.close()
    text = path.read_text(encoding="utf-8")
    assert "sk-live-123" not in text and [s for s, _ in drained] == [1, 2, 3]
    for line in text.splitlines():
        rec = json.loads(line)
        assert list(rec)[:4] == ["schema_version", "event_id", "seq", "prev_hash"]
        assert json.dumps(rec, separators=(",", ":")) == line
    assert [line for _, line in drained] == text.splitlines()
    assert verify_audit(path) == (3, None)


def test_intents_without_a_reserved_id_are_parked_not_waited_for(tmp_path: Path) -> None:
    """No client order id left and the reservation not yet durable: the
    coordinator does not wait in its handler (the tree goes quiescent at once),
    it parks the intents and decides them, in order, when persistence's reply
    lands (a message to the coordinator, no future inside)."""
    rig = Rig(tmp_path / "run", symbols=(BTC, ETH, SOL))
    rig.start()
    try:
        for sym, price in ((BTC, "100.0"), (ETH, "2000.0"), (SOL, "20.0")):
            rig.quote(sym, price, str(D(price) + D("0.1")))
        writer = rig.system.directory.get("persistence").actor
        writer.on_idle = lambda: None  # a slow disk: the next reservation stays queued
        ids = rig.system.services["ids"]
        while ids.available:
            ids.try_next()  # the refill asked at low water is queued at persistence
        for sym in (BTC, ETH, SOL):
            rig.signal("buy", 1, sym)
        rig.settle()  # returns: nobody waits
        coordinator = rig.coordinator()
        assert [p.symbol for p in coordinator.parked] == [BTC, ETH, SOL]
        assert rig.coord["parked_intents"] == 3  # introspection shows them
        assert rig.events("order_submitted") == []
        del writer.on_idle
        assert rig.system.ask("persistence", Flush()).ok  # the reservation lands
        rig.advance(1)
        assert not coordinator.parked
        decided = rig.decisions()
        assert [(r["inputs"]["symbol"], r["reason"]) for r in decided] == [
            (BTC, "approved"), (ETH, "approved"), (SOL, "approved")]
        sent = rig.events("order_submitted")
        assert [e["symbol"] for e in sent] == [BTC, ETH, SOL]
        assert [e["client_order_id"] for e in sent] == [r["client_order_id"] for r in decided]
    finally:
        rig.stop()
