"""Broker adapter protocol and the simulated exchange (DESIGN section 7).

Importing this package has no side effects: no file, thread or socket is
created until an engine is started with a path, a server is started, or an
adapter connects (rule 14).
"""

from exchange.config import ExchangeConfig, parse_spec, split_spec, validate_spec
from exchange.emit import ACCOUNT, ENGINE, MARKET, REQUESTER, TRANSPORT, Emit, StreamAction
from exchange.engine import SimulatedExchange
from exchange.events_log import EventsLog, read_events

__all__ = [
    "ACCOUNT", "ENGINE", "MARKET", "REQUESTER", "TRANSPORT", "Emit", "EventsLog",
    "ExchangeConfig", "SimulatedExchange", "StreamAction", "parse_spec", "read_events",
    "split_spec", "validate_spec",
]
