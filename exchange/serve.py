"""``main.py exchange``: the simulated exchange as a WebSocket server on loopback.

It quotes its own seeded random-walk market for ``--symbols`` (no runtime
feeds it), writes ``OUT/events.jsonl``, and keeps its engine while runtimes
connect, die and reconnect, which is what ``run --exchange ws://...`` and the
reconnect tests need. SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

from pathlib import Path

from exchange.feed import RandomWalkFeed
from exchange.synthetic import DEFAULT_SYMBOLS
from exchange.ws_server import ExchangeServer
from runtime.stop_request import StopRequest


def main(*, port: int = 8766, out: str | Path = "runs/exchange", symbols: str | None = None,
         seed: int = 0, host: str = "127.0.0.1") -> int:
    names = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else list(DEFAULT_SYMBOLS)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    server = ExchangeServer(host=host, port=port, out_dir=out_dir,
                            feed=RandomWalkFeed(names, seed=seed))
    stop = StopRequest().install()
    server.start()
    print(f"simulated exchange on {server.url} quoting {', '.join(names)}; "
          f"events -> {out_dir / 'events.jsonl'}; Ctrl-C stops", flush=True)
    try:
        while server.running and not stop.event.wait(0.5):
            pass
    finally:
        server.stop()
        stop.restore()
    print(f"exchange stopped: {dict(server.stats)}", flush=True)
    return 0
