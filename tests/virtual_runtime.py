"""The whole runtime tree on a virtual clock, for rule tests (stops, hedger).

Real actors, the real coordinator and the in-process simulated exchange; no
mocks. The exchange's own ``events.jsonl`` is the ground truth for what
reached the broker.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from config import config_hash, load_config
from exchange.events_log import read_events
from messages.enums import Side
from messages.exchange import ExchangeFault
from messages.market import Quote
from messages.orders import Signal
from runtime.clock import EPOCH_DEFAULT, VirtualClock
from app.launcher import LaunchSpec, Runtime

D = Decimal


class VirtualRuntime:
    def __init__(self, run_dir: Path, symbols: tuple[str, ...] = ("BTCUSDT",), *,
                 exchange: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None) -> None:
        self.run_dir = run_dir
        self.clock = VirtualClock(EPOCH_DEFAULT)
        cfg = load_config(overrides=config or None)
        spec = LaunchSpec(cfg, run_dir, symbols, self.clock, run_id=run_dir.name,
                          config_hash=config_hash(cfg), exchange_spec=dict(exchange or {}))
        self.rt = Runtime(spec)

    def __enter__(self) -> VirtualRuntime:
        self.rt.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.rt.stop()

    @property
    def system(self) -> Any:
        return self.rt.system

    # -- driving --------------------------------------------------------------------

    def at(self, t: float) -> None:
        """Advance virtual time to ``t`` seconds after the start."""
        self.system.run_until(t)

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    def quote(self, symbol: str, bid: str, ask: str) -> None:
        self.system.tell("venue", Quote(symbol, D(bid), D(ask), self.clock.now()))
        self.system.wait_quiescent()

    def signal(self, symbol: str, side: str, qty: str, stop_loss: str | None = None) -> None:
        self.system.tell("coordinator", Signal(symbol, Side(side), D(qty), self.clock.now(),
                                               stop_loss=D(stop_loss) if stop_loss else None))
        self.system.wait_quiescent()

    def fault(self, **spec: Any) -> None:
        self.system.tell("venue", ExchangeFault(spec))
        self.system.wait_quiescent()

    def tell(self, name: str, message: Any) -> None:
        self.system.tell(name, message)
        self.system.wait_quiescent()

    # -- reading ----------------------------------------------------------------------

    def info(self, name: str) -> dict[str, Any]:
        return self.rt.info(name)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        evs = read_events(self.run_dir / "events.jsonl")
        return [e for e in evs if kind is None or e["kind"] == kind]

    def orders(self, **match: Any) -> list[dict[str, Any]]:
        """``order_submitted`` events at the exchange matching every given field."""
        return [e for e in self.events("order_submitted")
                if all(e.get(k) == v for k, v in match.items())]

    def filled_qty(self, coids: set[str] | None = None, side: str | None = None) -> Decimal:
        return sum((D(e["qty"]) for e in self.events("order_filled")
                    if (coids is None or e["client_order_id"] in coids)
                    and (side is None or e["side"] == side)), D(0))

    def exchange_position(self, symbol: str) -> Decimal:
        return self.rt.exchange_positions().get(symbol, D(0))

    def seconds(self, event: dict[str, Any]) -> float:
        """Virtual seconds since the start at which an exchange event happened."""
        from datetime import datetime

        return (datetime.fromisoformat(event["t"]) - EPOCH_DEFAULT) / timedelta(seconds=1)
