"""``demo-groups``: the default ``run``'s order-group drills (rules 6 and 7).

Without it, order groups, rollbacks and emergency hedges happen only in
scenarios and tests, and a user watching ``run`` never sees them. This actor
is a small desk that trades its own pair of symbols (``demo.groups``, added
to the synthetic market with no strategy on them, so the strategy's
positions never meet the pairs in the netting check). Every ``every_s``:

1. If its last group has not settled yet (the group's record in the store
   says so), it waits: a closing group sent while a rollback is still
   retrying its unwind would fight the rollback.
2. It asks the coordinator for the book (``PortfolioRequest``; the answer is
   a second tell, never an ask). Orders in flight on its symbols: wait.
3. Its symbols are not flat (the last drill left a pair open): it submits a
   ``custom`` group that closes exactly what is held, each leg reducing.
4. Flat: it submits the next drill of ``drills`` (cycling), a ``pair`` group
   (long one symbol, short the other; which is which is drawn from the seed
   and the group's number, so a run is repeatable):

   * ``fill``: nothing else; the pair fills and is closed at the next step.
   * ``rollback``: the simulated exchange is told to reject this group's
     short leg (``reject_next`` targeted by group id, side and symbol, so no
     other order is touched); the group unwinds its long leg.
   * ``handoff``: the exchange also rejects the unwinds, as many times as a
     group tries (``max_unwind_attempts``); the group hands its residue to
     the hedger, which sells it (an emergency hedge, rule 7).

Every order goes through ``groups`` -> ``group-<id>`` -> the coordinator
(rule 1) or the hedger -> the coordinator; the faults are told to the
embedded exchange (``venue``), which is why ``run`` starts this actor only
with the embedded simulated exchange. Its counters (groups submitted, drills
started) live in the store (``meta``, written before the messages they
decided leave) and are also recovered from the group records, so a restarted
driver neither reuses a group id nor restarts its drill cycle.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from actors.market_feed import StopFeed
from actors.rebuild_gate import RebuildGate
from messages.control import PortfolioRequest, PortfolioSnapshot, SubmitGroup
from messages.exchange import ExchangeFault
from messages.persistence import Put, StoreDb
from runtime import Actor, handles
from trading.group_rebuild import KEY_PREFIX as GROUP_KEY_PREFIX
from trading.group_spec import DRILL_ID_PREFIX
from trading.owned_orders import records_with_prefix

NAME = "demo-groups"
ID_PREFIX = DRILL_ID_PREFIX
META_KEY = "demo_groups"
DRILLS = ("fill", "rollback", "handoff")


@dataclass(frozen=True)
class DemoSettings:
    symbols: tuple[str, str]
    every_s: float = 3.0
    qty: Decimal = Decimal(5)
    drills: tuple[str, ...] = DRILLS
    #: how often a group tries an unwind before it hands over (GroupSettings)
    unwind_attempts: int = 2
    #: a submitted group whose record never settles is given up after this long
    settle_timeout_s: float = 30.0

    @classmethod
    def from_config(cls, cfg: Any, groups: Any) -> DemoSettings:
        """From the ``demo.groups`` section and the groups' ``GroupSettings``."""
        return cls(tuple(cfg.symbols), float(cfg.every_s), Decimal(cfg.qty), tuple(cfg.drills),
                   int(groups.max_unwind_attempts),
                   settle_timeout_s=4 * float(groups.leg_timeout_s) + float(cfg.every_s))


@dataclass(frozen=True)
class DemoStep:
    """The driver's own interval timer."""


def pair_sides(seed: int, n: int, symbols: tuple[str, str]) -> tuple[str, str]:
    """(long, short) of drill group ``n``: drawn from the seed, the same in every run."""
    rng = random.Random(f"{seed}|demo-groups|{n}")
    long_sym = rng.choice(sorted(symbols))
    return long_sym, next(s for s in symbols if s != long_sym)


def drill_faults(drill: str, group_id: str, long_sym: str, short_sym: str,
                 unwind_attempts: int) -> list[dict[str, Any]]:
    """The exchange's targeted rejects for a drill (empty for ``fill``)."""
    if drill == "fill":
        return []
    rules = [{"group_id": group_id, "symbol": short_sym, "side": "sell", "count": 1}]
    if drill == "handoff":  # every unwind of the long leg (a sell) fails too
        rules.append({"group_id": group_id, "symbol": long_sym, "side": "sell",
                      "count": unwind_attempts})
    return rules


class DemoGroups(RebuildGate, Actor):
    def __init__(self, ctx, *, settings: DemoSettings, seed: int = 0, account: str = "default",
                 duration_s: float | None = None, groups: str = "groups", venue: str = "venue",
                 coordinator: str = "coordinator", persistence: str = "persistence") -> None:
        super().__init__(ctx)
        if len(set(settings.symbols)) != 2:
            raise ValueError(f"demo groups need two distinct symbols, got {settings.symbols}")
        unknown = sorted(set(settings.drills) - set(DRILLS))
        if unknown or not settings.drills:
            raise ValueError(f"demo groups: unknown drills {unknown} (known: {', '.join(DRILLS)})")
        self.cfg, self.seed, self.account = settings, seed, account
        self.groups, self.venue, self.coordinator = groups, venue, coordinator
        self.persistence = persistence
        #: no new step within one period of the run's end: the last group has time to settle
        self.until_s = None if duration_s is None else duration_s - settings.every_s
        self.seq = 0                  # demo groups submitted (their ids: demo-<seq>)
        self.drills_done = 0          # drills started (position in the cycle)
        self.last_group: str | None = None
        self.last_sent_at: float | None = None
        self.request_id: str | None = None
        self.stopped = False
        self.counts: Counter = Counter()
        self._t0 = 0.0
        self._timer: int | None = None
        self._dirty = False
        self._outbox: list[tuple[str, Any]] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._t0 = self.ctx.clock.monotonic()
        self.begin_rebuild()
        every = self.cfg.every_s
        self._timer = self.ctx.schedule(every, DemoStep(), interval_s=every)
        self._publish()

    def on_stop(self) -> None:
        self.ctx.cancel_timer(self._timer)
        self._publish()

    def rebuild(self, snapshot: dict[str, dict[str, Any]]) -> None:
        rec = snapshot.get("meta", {}).get(META_KEY) or {}
        self.seq = int(rec.get("seq", 0))
        self.drills_done = int(rec.get("drills", 0))
        self.last_group = rec.get("last_group")
        self.seq, self.last_group = last_submitted(snapshot, self.seq, self.last_group)
        if self.last_group is not None:
            self.last_sent_at = self.ctx.clock.monotonic()

    def persist_changes(self) -> None:
        if self._dirty:
            self.ctx.tell(self.persistence, Put(StoreDb.META, META_KEY, {
                "seq": self.seq, "drills": self.drills_done, "last_group": self.last_group}))
            self._dirty = False

    # -- the step -------------------------------------------------------------------------------

    @handles(DemoStep)
    def on_step(self, _msg: DemoStep) -> None:
        if self.stopped:
            return
        now = self.ctx.clock.monotonic()
        if self.until_s is not None and now - self._t0 > self.until_s + 1e-9:
            self.counts["steps_after_end"] += 1
            return
        if not self._last_settled(now):
            self.counts["waiting_for_group"] += 1
            return
        self.request_id = f"{self.ctx.name}|book|{self.seq}|{self.counts['book_requests']}"
        self.counts["book_requests"] += 1
        self._outbox.append((self.coordinator, PortfolioRequest(
            self.ctx.name, self.request_id, self.account, self.ctx.clock.now())))

    @handles(PortfolioSnapshot)
    def on_snapshot(self, msg: PortfolioSnapshot) -> None:
        if self.stopped or msg.request_id != self.request_id:
            return
        self.request_id = None
        mine = set(self.cfg.symbols)
        if any(sym in mine and (buys or sells) for sym, buys, sells in msg.pending):
            self.counts["waiting_for_orders"] += 1
            return
        held = {sym: qty for sym, qty in msg.positions if sym in mine and qty != 0}
        if held:
            self._close(held)
        else:
            self._drill()

    @handles(StopFeed)
    def on_stop_feed(self, msg: StopFeed) -> None:
        """The run is ending: no new group (the ones under way finish)."""
        if not self.stopped:
            self.stopped = True
            self.log.info("demo groups stopped after {} groups: {}", self.seq, msg.reason)

    # -- groups ---------------------------------------------------------------------------------

    def _drill(self) -> None:
        drill = self.cfg.drills[self.drills_done % len(self.cfg.drills)]
        gid = self._next_id()
        long_sym, short_sym = pair_sides(self.seed, self.seq, self.cfg.symbols)
        self.drills_done += 1
        self.counts[f"drill_{drill}"] += 1
        rules = drill_faults(drill, gid, long_sym, short_sym, self.cfg.unwind_attempts)
        if rules:  # before the group exists: the venue sees the fault before any of its legs
            self._outbox.append((self.venue, ExchangeFault({"reject_next": rules})))
        self.log.info("demo group {}: {} drill, long {} short {} x {}", gid, drill, long_sym,
                      short_sym, self.cfg.qty)
        self._submit({"id": gid, "kind": "pair", "long": long_sym, "short": short_sym,
                      "qty": self.cfg.qty})

    def _close(self, held: dict[str, Decimal]) -> None:
        gid = self._next_id()
        legs = [{"symbol": sym, "side": "sell" if qty > 0 else "buy", "qty": abs(qty)}
                for sym, qty in sorted(held.items())]
        self.counts["closes"] += 1
        self.log.info("demo group {}: closing {}", gid, {s: str(q) for s, q in held.items()})
        self._submit({"id": gid, "kind": "custom", "legs": legs})

    def _next_id(self) -> str:
        self.seq += 1
        self._dirty = True
        return f"{ID_PREFIX}{self.seq}"

    def _submit(self, spec: dict[str, Any]) -> None:
        self.last_group, self.last_sent_at = spec["id"], self.ctx.clock.monotonic()
        self.counts["submitted"] += 1
        self._outbox.append((self.groups, SubmitGroup(spec, self.ctx.clock.now())))

    def _last_settled(self, now: float) -> bool:
        """Has our last group ended (its record says settled), or been given up on?"""
        if self.last_group is None:
            return True
        store = self.ctx.services.get("store")
        rec = store.get(StoreDb.GROUPS, GROUP_KEY_PREFIX + self.last_group) if store else None
        if isinstance(rec, dict) and rec.get("settled"):
            return True
        if self.last_sent_at is not None and now - self.last_sent_at > self.cfg.settle_timeout_s:
            self.log.warning("demo group {} has not settled in {}s; going on", self.last_group,
                             self.cfg.settle_timeout_s)
            self.counts["given_up"] += 1
            return True
        return False

    def _publish(self) -> None:
        self.ctx.cell.info = {"symbols": list(self.cfg.symbols), "submitted": self.seq,
                              "drills": self.drills_done, "last_group": self.last_group,
                              "stopped": self.stopped, "counts": dict(self.counts)}


def last_submitted(snapshot: dict[str, dict[str, Any]], seq: int,
                   last_group: str | None) -> tuple[int, str | None]:
    """(number, id) of the last drill group submitted: the driver's counter, or a
    higher ``demo-<n>`` group in the store (submitted, but the counter missed it)."""
    for tail, _rec in records_with_prefix(snapshot, "groups", GROUP_KEY_PREFIX + ID_PREFIX):
        if tail.isdigit() and int(tail) > seq:
            seq, last_group = int(tail), ID_PREFIX + tail
    return seq, last_group
