"""The persistence actor and the LMDB store: group commit, durable acks, readers
that never block, whole transactions after SIGKILL, restart-stable ids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from datetime import datetime, UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.persistence import PersistenceActor
from messages import OrderRequest, OrderType, Side
from messages.base import MessageError
from messages.persistence import (
    Ack, Delete, Durable, Flush, GetStats, PersistenceError, Put, PutMany, Reserve,
)
from runtime import Actor, ChildSpec, handles
from trading.id_allocator import IdAllocator
from trading.store import Store, StoreClosed

TS = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
WAIT = 10.0


class Collector(Actor):
    """Receives Durable replies, and checks at that moment what readers see."""

    def __init__(self, ctx: Any, run_dir: Path) -> None:
        super().__init__(ctx)
        self.run_dir = run_dir
        self.got: list[Durable] = []
        self.visible_at_ack: list[Any] = []
        #: id allocators whose reservations it answers (the coordinator's part)
        self.allocators: list[IdAllocator] = []

    @handles(Durable)
    def on_durable(self, msg: Durable) -> None:
        for ids in self.allocators:
            if ids.is_reply(msg):
                ids.landed(msg)
                return
        self.got.append(msg)
        with Store.open(self.run_dir) as store:
            self.visible_at_ack.append(store.get("orders", str(msg.token)))


def start(harness_factory: Any, run_dir: Path, **kw: Any) -> Any:
    return harness_factory(
        ChildSpec("persistence", PersistenceActor, kwargs={"run_dir": run_dir, **kw}),
        ChildSpec("collector", Collector, args=(run_dir,)))


def allocator(h: Any, counter: str = "coid", **kw: Any) -> IdAllocator:
    """Ids reserved through the persistence actor, the replies handed over by the collector."""
    ids = IdAllocator.via_actor(h.system.tell, counter, reply_to="collector", **kw)
    h.actor("collector").allocators.append(ids)
    return ids


def order(coid: str) -> OrderRequest:
    return OrderRequest(coid, "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("2.5"), TS,
                        price=Decimal("100.25"))


def flush(h: Any) -> Durable:
    reply: Durable = h.system.ask("persistence", Flush(), timeout=WAIT)
    return reply


# -- values and reads ------------------------------------------------------------------


def test_values_round_trip_through_the_store(harness_factory: Any, tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    record = {"qty": Decimal("1.50"), "at": TS, "side": Side.SELL, "legs": ["a", "b"], "n": 3}
    h.system.tell("persistence", Put("orders", "o-1", order("o-1")))
    h.system.tell("persistence", Put("groups", "g-1", record))
    h.system.tell("persistence", PutMany((("fills", "f-1", {"q": Decimal("1")}),
                                          ("positions", "BTCUSDT", Decimal("-2")))))
    flush(h)
    with Store.open(tmp_path) as store:
        assert store.get("orders", "o-1") == order("o-1")
        got = store.get("groups", "g-1")
        assert got == record and isinstance(got["qty"], Decimal) and got["side"] is Side.SELL
        assert store.get("positions", "BTCUSDT") == Decimal("-2")
        assert store.get("orders", "missing", "dflt") == "dflt"
        snap = store.read_all()
        assert set(snap) >= {"orders", "groups", "fills", "positions", "meta"}
        assert snap["fills"] == {"f-1": {"q": Decimal("1")}}
        fut: Future = Future()
        h.system.tell("persistence", Delete("orders", "o-1", ack=fut))
        assert fut.result(WAIT).result is True
        assert store.get("orders", "o-1") is None
        assert store.items("groups", prefix="g-") == [("g-1", record)]


def test_bad_messages_are_refused_where_they_are_built() -> None:
    with pytest.raises(MessageError, match="unknown database"):
        Put("nonsense", "k", 1)
    with pytest.raises(MessageError, match="non-empty"):
        Put("orders", "", 1)
    with pytest.raises(MessageError, match="bytes"):
        Put("orders", "k" * 600, 1)
    with pytest.raises(MessageError, match="ack"):
        Put("orders", "k", 1, ack=threading.Event())  # type: ignore[arg-type]  # wrong on purpose: refused
    with pytest.raises(MessageError, match="needs an ack"):
        Reserve("ids", 10)
    # actors send these two: the reply is a message, never a live object inside one
    with pytest.raises(MessageError, match=r"expected Ack\(reply_to, token\)"):
        Reserve("ids", 10, ack=Future())  # type: ignore[arg-type]  # wrong on purpose: refused
    with pytest.raises(MessageError, match=r"expected Ack\(reply_to, token\)"):
        Flush(ack=Future())  # type: ignore[arg-type]  # wrong on purpose: refused


# -- group commit -------------------------------------------------------------------------


def test_group_commit_puts_many_records_in_each_transaction(harness_factory: Any,
                                                             tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    n = 5000
    last: Future = Future()
    for i in range(n):
        h.system.tell("persistence", Put("fills", f"f{i:05d}", {"i": i, "px": Decimal("1.1")},
                                         ack=last if i == n - 1 else None))
    last.result(WAIT)
    stats = h.ask("persistence", GetStats())
    assert stats["records"] == n
    assert stats["transactions"] <= n // 100, stats  # >= 100 records per fsync on average
    assert stats["records_per_txn"] >= 100
    with Store.open(tmp_path) as store:
        assert store.count("fills") == n


def test_acks_come_only_after_commit_and_readers_never_wait(harness_factory: Any,
                                                            tmp_path: Path) -> None:
    """Hold the writer inside its transaction (data written, not committed): readers
    answer at once from the last commit, and no ack has gone out."""
    h = start(harness_factory, tmp_path)
    h.system.tell("persistence", Put("orders", "before", order("before")))
    flush(h)
    store = h.actor("persistence").store
    inside, release = threading.Event(), threading.Event()
    store._env = _GatedEnv(store._env, inside, release)
    try:
        fut: Future = Future()
        h.system.tell("persistence", Put("orders", "o-1", order("o-1"), ack=fut))
        h.system.tell("persistence", Put("orders", "o-2", order("o-2"),
                                         ack=Ack("collector", "o-2")))
        assert inside.wait(WAIT), "the writer never reached its commit"
        seen: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: seen.update(
            before=store.get("orders", "before"), o1=store.get("orders", "o-1"),
            count=store.count("orders")))
        reader.start()
        reader.join(WAIT)
        assert not reader.is_alive(), "a reader blocked behind the writer"
        assert seen == {"before": order("before"), "o1": None, "count": 1}
        assert not fut.done()
        assert h.actor("collector").got == []
    finally:
        release.set()
    assert fut.result(WAIT).ok
    h.settle()
    collector = h.actor("collector")
    assert [d.token for d in collector.got] == ["o-2"]
    assert collector.visible_at_ack == [order("o-2")]  # committed before the ack was sent
    store._env = store._env.env


class _GatedEnv:
    """Wraps the LMDB env so a write transaction waits before it commits."""

    def __init__(self, env: Any, inside: threading.Event, release: threading.Event) -> None:
        self.env, self.inside, self.release = env, inside, release

    def begin(self, write: bool = False, **kw: Any) -> Any:
        txn = self.env.begin(write=write, **kw)
        return _GatedTxn(txn, self) if write else txn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)


class _GatedTxn:
    def __init__(self, txn: Any, gate: _GatedEnv) -> None:
        self.txn, self.gate = txn, gate

    def __enter__(self) -> Any:
        return self.txn.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        self.gate.inside.set()
        assert self.gate.release.wait(WAIT)
        return self.txn.__exit__(*exc)


def test_concurrent_readers_only_ever_see_whole_batches(harness_factory: Any,
                                                        tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    store = h.actor("persistence").store
    done = threading.Event()
    problems: list[str] = []
    snapshots = [0]

    def read() -> None:
        while not done.is_set():
            snap = store.read_all()
            problems.extend(check_batches(snap))
            snapshots[0] += 1

    reader = threading.Thread(target=read)
    reader.start()
    last: Future = Future()
    for k in range(300):
        h.system.tell("persistence", batch(k, ack=last if k == 299 else None))
    last.result(WAIT)
    done.set()
    reader.join(WAIT)
    assert not problems, problems[:5]
    assert snapshots[0] > 0
    assert check_batches(store.read_all()) == []
    assert store.get("meta", "last_batch") == 299


def batch(k: int, ack: Any = None, width: int = 20) -> PutMany:
    items = [("fills", f"{k:08d}:{i:03d}", {"batch": k, "i": i}) for i in range(width)]
    items.append(("meta", "last_batch", k))
    return PutMany(tuple(items), ack=ack)


def check_batches(snap: dict[str, dict[str, Any]], width: int = 20) -> list[str]:
    """Every batch present is complete, and batches form the prefix 0..last_batch."""
    by_batch: dict[int, set[int]] = {}
    for key, value in snap["fills"].items():
        k, i = (int(x) for x in key.split(":"))
        if value != {"batch": k, "i": i}:
            return [f"bad value at {key}: {value!r}"]
        by_batch.setdefault(k, set()).add(i)
    last = snap["meta"].get("last_batch", -1)
    problems = [f"batch {k} torn: {len(s)} of {width}" for k, s in by_batch.items()
                if s != set(range(width))]
    if sorted(by_batch) != list(range(last + 1)):
        problems.append(f"batches {sorted(by_batch)[:3]}..{sorted(by_batch)[-3:]} "
                        f"are not the prefix up to last_batch={last}")
    return problems


# -- failures reach the caller ---------------------------------------------------------------


def test_unencodable_value_fails_its_ack_and_the_actor_keeps_running(
        harness_factory: Any, tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    bad: Future = Future()
    h.system.tell("persistence", Put("orders", "bad", {"x": object()}, ack=bad))
    h.system.tell("persistence", Put("orders", "bad2", float, ack=Ack("collector", "bad2")))
    h.system.tell("persistence", PutMany((("orders", "a", 1), ("orders", "b", threading.Lock())),
                                         ack=Ack("collector", "many")))
    good: Future = Future()
    h.system.tell("persistence", Put("orders", "good", 1, ack=good))
    with pytest.raises(PersistenceError, match="cannot encode"):
        bad.result(WAIT)
    assert good.result(WAIT).ok
    h.settle()
    replies = {d.token: d for d in h.actor("collector").got}
    assert not replies["bad2"].ok and "cannot encode" in replies["bad2"].error
    assert not replies["many"].ok and "nothing of the batch" in replies["many"].error
    with Store.open(tmp_path) as store:
        assert store.get("orders", "good") == 1
        assert store.get("orders", "a") is None  # the batch was all-or-nothing
    cell = h.cell("persistence")
    assert (cell.incarnation, cell.failures) == (1, 0)
    assert h.ask("persistence", GetStats())["rejected"] == 3


def test_failed_transaction_fails_only_that_batch(harness_factory: Any, tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    store = h.actor("persistence").store
    real_apply = store.apply
    calls = [0]

    def flaky(ops: list) -> list:
        calls[0] += 1
        if calls[0] == 1:
            raise OSError("disk on fire")
        return real_apply(ops)

    store.apply = flaky
    try:
        first: Future = Future()
        h.system.tell("persistence", Put("orders", "x", 1, ack=first))
        with pytest.raises(PersistenceError, match="disk on fire"):
            first.result(WAIT)
        second: Future = Future()
        h.system.tell("persistence", Put("orders", "y", 2, ack=second))
        assert second.result(WAIT).ok
    finally:
        del store.apply
    assert store.get("orders", "x") is None and store.get("orders", "y") == 2
    stats = h.ask("persistence", GetStats())
    assert stats["failed_batches"] == 1 and stats["failed_records"] == 1
    assert h.cell("persistence").failures == 0


def test_a_crash_fails_pending_acks_and_the_restart_writes_on(harness_factory: Any,
                                                              tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    actor = h.actor("persistence")
    store = Store.open(tmp_path)  # the test's own hold on the shared environment
    assert store is actor.store

    def boom() -> None:
        raise RuntimeError("bug in the writer")

    actor.on_idle = boom  # the next idle moment crashes the instance
    lost: Future = Future()
    h.system.tell("persistence", Put("orders", "lost", 1, ack=lost))
    with pytest.raises(PersistenceError, match="crashed before commit"):
        lost.result(WAIT)
    h.advance(10)  # the supervisor's restart backoff, in virtual time
    assert h.cell("persistence").restarts == 1
    ok: Future = Future()
    h.system.tell("persistence", Put("orders", "after", 2, ack=ok))
    assert ok.result(WAIT).ok
    assert h.actor("persistence").store is store  # same shared environment
    assert store.get("orders", "after") == 2 and store.get("orders", "lost") is None
    h.system.shutdown()
    # The crashed and the stopped instance each released their hold; ours remains.
    assert not store.closed
    store.close()
    assert store.closed


def test_a_crash_in_the_handler_fails_the_ack_the_message_carried(harness_factory: Any,
                                                                  tmp_path: Path) -> None:
    """The write being handled when the instance crashes is not buffered yet: its
    ack future must still fail at once, not leave the sender waiting out a timeout."""
    h = start(harness_factory, tmp_path)
    actor = h.actor("persistence")

    def boom(msg: Put) -> None:
        raise RuntimeError("bug in the Put handler")

    actor.on_put = boom
    actor._dispatch_cache.clear()  # the handler table is resolved once per instance
    lost: Future = Future()
    h.system.tell("persistence", Put("orders", "lost", 1, ack=lost))
    with pytest.raises(PersistenceError, match="crashed on Put: RuntimeError"):
        lost.result(WAIT)
    assert h.cell("persistence").failures == 1
    h.advance(10)  # restart backoff
    ok: Future = Future()
    h.system.tell("persistence", Put("orders", "after", 2, ack=ok))
    assert ok.result(WAIT).ok


# -- linger: a state write waits for the intent that follows it ---------------------------


def _lingering(tmp_path: Path, linger_s: float) -> Any:
    from runtime.testing import VirtualHarness

    return VirtualHarness(ChildSpec("persistence", PersistenceActor,
                                    kwargs={"run_dir": tmp_path, "max_delay_s": 60.0,
                                            "linger_s": linger_s})).start()


def test_a_state_write_and_the_acknowledged_write_after_it_share_one_commit(
        tmp_path: Path) -> None:
    # A linger far longer than the gap between the two tells, so the pairing is certain.
    h = _lingering(tmp_path, linger_s=30.0)
    try:
        h.system.tell("persistence", Put("meta", "hedge|BTC", {"target": "5"}))
        durable: Future = Future()
        h.system.tell("persistence", Put("orders", "o1", {"status": "intent"}, ack=durable))
        assert durable.result(10).ok
        actor = h.actor("persistence")
        assert (actor.transactions, actor.records) == (1, 2)
    finally:
        h.system.shutdown()


def test_a_lone_state_write_is_committed_after_the_linger_before_quiescence(
        tmp_path: Path) -> None:
    h = _lingering(tmp_path, linger_s=0.02)
    try:
        h.system.tell("persistence", Put("meta", "stop|1", {"phase": "protecting"}))
        h.settle()  # the actor is busy while it lingers: quiescent means committed
        actor = h.actor("persistence")
        assert actor.transactions == 1 and actor.store.get("meta", "stop|1") == {
            "phase": "protecting"}
    finally:
        h.system.shutdown()


def test_an_acknowledged_write_never_lingers(tmp_path: Path) -> None:
    h = _lingering(tmp_path, linger_s=30.0)
    try:
        durable: Future = Future()
        t0 = time.monotonic()
        h.system.tell("persistence", Put("orders", "o1", {"status": "intent"}, ack=durable))
        assert durable.result(10).ok
        assert time.monotonic() - t0 < 10  # far below the 30 s linger: it did not wait
    finally:
        h.system.shutdown()


def test_writes_nobody_waits_for_ride_with_the_next_acknowledged_one(
        harness_factory: Any, tmp_path: Path) -> None:
    """A busy mailbox of fills and statuses does not pay an fsync every
    ``max_delay_s``: only an acknowledged write's wait forces a commit, and
    that commit carries everything buffered before it."""
    h = start(harness_factory, tmp_path, max_delay_s=1e-9, unacked_max_delay_s=3600.0)
    actor = h.actor("persistence")
    actor.on_idle = lambda: None  # the mailbox never runs empty, as under load
    for i in range(20):
        h.tell("persistence", Put("fills", f"f{i}", {"i": i}))
    assert actor.transactions == 0 and actor.stats()["buffered"] == 20
    h.tell("persistence", Put("orders", "o1", {"status": "intent"}, ack=Ack("collector", "o1")))
    assert [d.token for d in h.actor("collector").got] == ["o1"]
    assert (actor.transactions, actor.records) == (1, 21)


# -- lifecycle ---------------------------------------------------------------------------


def test_clean_stop_commits_what_is_buffered(tmp_path: Path) -> None:
    from runtime.testing import VirtualHarness

    h = VirtualHarness(ChildSpec("persistence", PersistenceActor,
                                 kwargs={"run_dir": tmp_path, "max_delay_s": 3600.0})).start()
    actor = h.actor("persistence")
    actor.on_idle = lambda: None  # nothing commits until the stop
    for i in range(2000):
        h.system.tell("persistence", Put("fills", f"f{i:05d}", i))
    h.settle()
    assert actor.stats()["buffered"] == 2000
    store = actor.store
    h.system.shutdown()
    assert (actor.transactions, actor.records) == (1, 2000)
    assert store.closed
    with pytest.raises(StoreClosed):
        store.get("fills", "f00000")
    with Store.open(tmp_path) as again:
        assert again is not store
        assert again.count("fills") == 2000


def test_store_is_shared_in_process_and_reopens(tmp_path: Path) -> None:
    assert not (tmp_path / "store").exists()
    a = Store.open(tmp_path)
    b = Store.open(tmp_path)
    assert a is b
    assert a.apply([("put", "meta", b"k", b"\xa1v")]) == [None]
    b.close()
    assert not a.closed and a.get("meta", "k") == "v"
    a.reopen()
    assert a.get("meta", "k") == "v"
    a.close()
    assert a.closed
    with Store.open(tmp_path, readonly=True) as ro:
        assert ro.get("meta", "k") == "v"


def test_a_full_map_grows(tmp_path: Path) -> None:
    with Store.open(tmp_path, map_size=64 * 1024) as store:
        ops = [("put", "fills", f"k{i:05d}".encode(), os.urandom(1000)) for i in range(2000)]
        store.apply(ops)
        assert store.count("fills") == 2000
        assert store.map_size > 64 * 1024


# -- ids (rule 15) -------------------------------------------------------------------------------


def test_ids_unique_and_increasing_across_a_restart(harness_factory: Any,
                                                    tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    ids = allocator(h, prefix="tw-", block=16).start()
    first = [ids.next_id() for _ in range(40)]
    h.system.shutdown()
    h2 = start(harness_factory, tmp_path)
    ids2 = allocator(h2, prefix="tw-", block=16).start()
    second = [ids2.next_id() for _ in range(40)]
    numbers = [int(x.removeprefix("tw-")) for x in first + second]
    assert numbers == sorted(numbers) and len(set(numbers)) == 80
    assert min(numbers[40:]) > max(numbers[:40])


def test_ids_are_thread_safe_and_refill_ahead(harness_factory: Any, tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    refills = []
    ids = allocator(h, block=100, on_refill=lambda: refills.append(1)).start()
    out: list[list[str]] = [[] for _ in range(8)]

    def take(slot: list[str]) -> None:
        for _ in range(500):
            slot.append(ids.next_id(timeout=WAIT))

    threads = [threading.Thread(target=take, args=(slot,)) for slot in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    got = [x for slot in out for x in slot]
    assert len(got) == 4000 and len(set(got)) == 4000
    for slot in out:
        assert [int(x) for x in slot] == sorted(int(x) for x in slot)
    assert len(refills) >= 40
    h.tell("persistence", Reserve("coid", 5, ack=Ack("collector", "last")))
    (reply,) = h.actor("collector").got
    start_, stop = reply.result
    assert stop - start_ == 5 and start_ > max(int(x) for x in got)


def test_ids_without_start_reserve_on_first_use(harness_factory: Any, tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    ids = allocator(h, prefix="A-", block=4)
    assert [ids.next_id() for _ in range(10)] == [f"A-{i}" for i in range(1, 11)]
    broken = IdAllocator.via_actor(h.system.tell, "coid", reply_to="collector", target="nobody",
                                   block=4)
    with pytest.raises(TimeoutError, match="cannot reach 'nobody'"):
        broken.next_id(timeout=0.2)


def test_reserve_replies_to_an_actor(harness_factory: Any, tmp_path: Path) -> None:
    h = start(harness_factory, tmp_path)
    h.tell("persistence", Reserve("ids", 10, ack=Ack("collector", "r1")))
    h.tell("persistence", Reserve("ids", 5, ack=Ack("collector", "r2")))
    assert [d.result for d in h.actor("collector").got] == [(1, 11), (11, 16)]


# -- SIGKILL in the middle of heavy writes ---------------------------------------------------------

WRITER = textwrap.dedent("""
    import json, os, sys, time
    from collections import deque
    from concurrent.futures import Future
    from loguru import logger
    from actors.persistence import PersistenceActor
    from trading.id_allocator import IdAllocator
    from messages.persistence import Durable, PutMany
    from runtime import Actor, ActorSystem, ChildSpec, SupervisorSpec, handles
    from trading.store import Store

    class IdReplies(Actor):
        @handles(Durable)
        def on_durable(self, msg):
            ids.landed(msg)

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    run_dir, progress = sys.argv[1], sys.argv[2]
    with Store.open(run_dir) as store:
        k = store.get("meta", "last_batch", -1) + 1
    system = ActorSystem(name="writer")
    ids = IdAllocator.via_actor(system.tell, "coid", reply_to="ids", block=64)
    system.start(SupervisorSpec("root", [ChildSpec(
        "persistence", PersistenceActor, kwargs={"run_dir": run_dir}),
        ChildSpec("ids", IdReplies)]))
    ids.start()
    inflight = deque()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        coid = ids.next_id()
        items = [("fills", f"{k:08d}:{i:03d}", {"batch": k, "i": i}) for i in range(100)]
        items.append(("orders", coid, {"batch": k}))
        items.append(("meta", "last_batch", k))
        fut = Future()
        system.tell("persistence", PutMany(tuple(items), ack=fut))
        inflight.append((k, int(coid), fut))
        while inflight and (len(inflight) > 30 or inflight[0][2].done()):
            kk, cid, f = inflight.popleft()
            f.result(30)
            with open(progress + ".tmp", "w") as fh:
                json.dump({"acked": kk, "max_id": cid}, fh)
            os.replace(progress + ".tmp", progress)
        k += 1
""")


def run_writer_and_kill(script: Path, run_dir: Path, progress: Path, at_least: int,
                        log: Path) -> dict[str, int]:
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(run_dir), str(progress)],
                                cwd=run_dir, stdout=err, stderr=err)
    try:
        state: dict[str, int] = {}
        for _ in range(1500):  # bounded poll of the child's progress file (<= ~30 s)
            if progress.exists():
                state = json.loads(progress.read_text())
                if state["acked"] >= at_least:
                    break
            assert proc.poll() is None, f"writer died: {log.read_text()[-2000:]}"
            time.sleep(0.02)
        else:
            pytest.fail(f"writer made no progress: {state} {log.read_text()[-2000:]}")
        assert proc.poll() is None, "writer finished before the kill"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(WAIT) == -signal.SIGKILL
        return json.loads(progress.read_text())  # as of the kill: acked before it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)


def test_sigkill_mid_write_leaves_only_whole_transactions(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    progress = tmp_path / "progress.json"
    log = tmp_path / "writer.log"
    at_least = 150
    for _round in range(2):
        acked = run_writer_and_kill(script, run_dir, progress, at_least, log)
        with Store.open(run_dir) as store:
            snap = store.read_all()
            assert check_batches(snap, width=100) == []
            last = snap["meta"]["last_batch"]
            assert last >= acked["acked"] >= at_least  # every acknowledged batch survived
            assert {v["batch"] for v in snap["orders"].values()} == set(range(last + 1))
            ids = [int(x) for x in snap["orders"]]
            assert len(ids) == last + 1
            fresh = IdAllocator.via_store(store, "coid", block=8).start()
            assert int(fresh.next_id()) > max(ids) >= acked["max_id"]
        at_least = last + 150
