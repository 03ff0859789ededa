"""``main.py exchange``: the simulated exchange as a WebSocket server on loopback.

It quotes its own seeded random-walk market for ``--symbols`` every
``--tick-ms`` (default 100 ms, the embedded market's rate; no runtime feeds
it), writes ``OUT/events.jsonl``, and keeps its engine while runtimes
connect, die and reconnect, which is what ``run --exchange ws://...`` and the
reconnect tests need. SIGINT/SIGTERM stop it cleanly.

Its behaviour (latency, fees, partial fills, quote currency...) comes from
the same ``exchange`` config section the embedded exchange of ``run`` uses
(config/default.yaml plus ``--config``), so a run behaves alike against
either; a bad value is refused before anything listens.
"""

from __future__ import annotations

import sys
from pathlib import Path

from exchange.binance_face.auth import keys_from_env
from exchange.binance_face.server import BinanceFaceServer
from exchange.feed import RandomWalkFeed
from exchange.synthetic import DEFAULT_SYMBOLS
from exchange.ws_server import ExchangeServer
from app.stop_request import StopRequest
from config.sim_exchange import SimSettings
from messages.bounds import Bounds, bounds_from_config


def sim_config(config_path: str | Path | None = None) -> SimSettings:
    """The simulated exchange's settings from the config's ``exchange`` section."""
    from config import load_config

    return SimSettings.from_spec(load_config(config_path).exchange.sim_settings())


def sim_bounds(config_path: str | Path | None = None) -> Bounds:
    """The sane ranges of incoming orders and market data (config ``bounds``)."""
    from config import load_config

    return bounds_from_config(load_config(config_path).bounds)


def main(*, port: int = 8766, out: str | Path = "runs/exchange",
         symbols: str | list[str] | None = None,
         seed: int = 0, host: str = "127.0.0.1", config_path: str | Path | None = None,
         tick_ms: float = 100.0, protocol: str = "native") -> int:
    from config import ConfigError

    try:
        settings = sim_config(config_path)
        keys = keys_from_env() if protocol == "binanceusdm" else ()
        bounds = sim_bounds(config_path)
    except (ConfigError, ValueError) as exc:
        print(f"tradewarden exchange: configuration error\n{exc}", file=sys.stderr)
        return 2
    if isinstance(symbols, str):
        symbols = [s.strip() for s in symbols.split(",") if s.strip()]
    names = list(symbols) if symbols else list(DEFAULT_SYMBOLS)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not tick_ms > 0:
        print(f"tradewarden exchange: --tick-ms must be more than 0, got {tick_ms}",
              file=sys.stderr)
        return 2
    feed = RandomWalkFeed(names, seed=seed)
    server: ExchangeServer | BinanceFaceServer
    if protocol == "binanceusdm":
        server = BinanceFaceServer(host=host, port=port, out_dir=out_dir, config=settings,
                                   feed=feed, feed_interval_s=tick_ms / 1000, keys=keys,
                                   symbols=names)
    else:
        server = ExchangeServer(host=host, port=port, out_dir=out_dir, config=settings,
                                feed=feed, feed_interval_s=tick_ms / 1000)
    server.engine.bounds = bounds
    try:
        server.start()
    except OSError as exc:  # the port is taken, or the host is not ours
        server.stop()
        server.engine.stop()
        print(f"tradewarden exchange: cannot listen on {host}:{port}: {exc.strerror or exc} "
              "(another exchange running? pick another --port, or 0 for a free one)",
              file=sys.stderr)
        return 2
    stop = StopRequest().install()
    if isinstance(server, BinanceFaceServer):
        url = f"{server.base_url} (Binance USDⓈ-M face; accounts: " \
              f"{', '.join(sorted({k.account for k in keys}))})"
    else:
        url = server.url
    print(f"simulated exchange on {url} quoting {', '.join(names)} every {tick_ms:g} ms "
          f"(latency {settings.latency_ms:g} ms, fees {settings.maker_fee_bps}/"
          f"{settings.taker_fee_bps} bps, {settings.quote_currency}); "
          f"events -> {out_dir / 'events.jsonl'}; Ctrl-C stops", flush=True)
    try:
        while server.running and not stop.event.wait(0.5):
            pass
    finally:
        server.stop()
        stop.restore()
    print(f"exchange stopped: {dict(server.stats)}", flush=True)
    return 0
