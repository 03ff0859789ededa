"""The Binance face's core: the parts one server's endpoints share.

One ``Face`` per server, used only from the server's event loop (the engine
is single-threaded). It owns no behaviour of its own; it builds and wires the
parts, each owning its state:

- the venue's door state: API keys (:class:`Authenticator`), venue faults
  (:class:`VenueFaults`), request weights (:class:`Weights`), listen keys;
- the engine bridge: :class:`OrderDesk` (place, find, cancel) and
  :class:`AccountView` (mark, wallet, maker), with the id :class:`Registry`
  and the accounts' :class:`PositionModes`;
- :class:`Delivery`, through which every list of engine emits is routed to
  the open stream sessions (``sessions``).

Endpoints (``rest``, ``streams``) and the server reach the parts through it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from exchange.binance_face.account_view import AccountView
from exchange.binance_face.auth import ApiKey, Authenticator
from exchange.binance_face.delivery import Delivery
from exchange.binance_face.listen_keys import ListenKeys
from exchange.binance_face.markets import MarketSpec
from exchange.binance_face.order_desk import CancelWaiters, OrderDesk
from exchange.binance_face.position_mode import PositionModes
from exchange.binance_face.registry import Registry
from exchange.binance_face.venue_faults import VenueFaults
from exchange.binance_face.weights import Limits, Weights
from exchange.emit import Emit
from exchange.engine import SimulatedExchange
from exchange.virtual_wire import VirtualTiming, WallTiming

if TYPE_CHECKING:
    from exchange.binance_face.streams import StreamSession


class Face:
    def __init__(self, engine: SimulatedExchange, keys: tuple[ApiKey, ...] | list[ApiKey],
                 markets: dict[str, MarketSpec], limits: Limits | None = None,
                 timing: VirtualTiming | WallTiming | None = None) -> None:
        self.engine = engine
        #: the engine's delays: on the loop's clock or a scenario's virtual one
        self.timing: VirtualTiming | WallTiming = timing or WallTiming()
        self.auth = Authenticator(keys)
        self.markets = markets
        self.faults = VenueFaults()
        self.weights = Weights(limits)
        self.registry = Registry()
        self.modes = PositionModes(engine)
        self.listen_keys = ListenKeys()
        self.view = AccountView(engine)
        waiters = CancelWaiters(self.timing)
        self.delivery = Delivery(engine, self.modes, self.registry, self.view, self.timing,
                                 waiters)
        self.desk = OrderDesk(engine, markets, self.modes, self.registry, self.view,
                              self.timing, waiters, self.delivery.route)

    @property
    def sessions(self) -> set[StreamSession]:
        """The open stream sessions (owned by the delivery part)."""
        return self.delivery.sessions

    def now(self) -> datetime:
        return self.engine.now()

    def server_ms(self) -> int:
        """The venue's clock in ms (skewed by a clock-skew venue fault)."""
        return self.faults.server_ms()

    def mark(self, symbol: str) -> Decimal | None:
        return self.view.mark(symbol)

    def route(self, emits: list[Emit]) -> None:
        """Deliver engine emits (see :class:`Delivery`)."""
        self.delivery.route(emits)
