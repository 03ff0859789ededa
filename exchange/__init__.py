"""Broker adapter protocol and the simulated exchange (DESIGN section 7).

Importing this package has no side effects: no file, thread or socket is
created until an engine is started with a path, a server is started, or an
adapter connects (rule 14). The simulated exchange's settings and fault
specs are config's schema (``config.sim_exchange``), re-exported here.
"""

from config.sim_exchange import SimSettings, parse_spec, split_spec, validate_spec
from exchange.emit import ACCOUNT, ENGINE, MARKET, REQUESTER, TRANSPORT, Emit, StreamAction
from exchange.engine import SimulatedExchange
from exchange.events_log import EventsLog, read_events

__all__ = [
    "ACCOUNT", "ENGINE", "MARKET", "REQUESTER", "TRANSPORT", "Emit", "EventsLog",
    "SimSettings", "SimulatedExchange", "StreamAction", "parse_spec", "read_events",
    "split_spec", "validate_spec",
]
