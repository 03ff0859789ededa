"""Tradewarden command line: ``python main.py COMMAND`` (or ``tradewarden COMMAND``).

Commands are thin: each parses its options and hands over to the module
that does the work, imported lazily so ``--help`` is instant and importing
this file has no side effects (rule 14).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.schema import Config


def _bench(args: argparse.Namespace) -> int:
    from app.bench.suite import main as bench_main

    return bench_main(quick=args.quick, out=args.out)


def _check_strategy(cfg: Config) -> object:
    """The configured strategy exists and takes its parameters (ValueError naming the
    known ones otherwise): checked before a run directory is made. Returns an
    instance, whose ``warmup`` the banner reports."""
    from trading.strategy import strategy_by_name

    strategy = cfg.strategy
    return strategy_by_name(strategy.name, strategy.params)


def _run(args: argparse.Namespace) -> int:
    from app.run_job import run

    return run(args, preflight=_check_strategy)


def _scenario(args: argparse.Namespace) -> int:
    from app.scenario_cli import main as scenario_main

    return scenario_main(args.files, args.out, args.config, venue=args.venue)


def _audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.audit_cli import main as audit_main, verify

    if args.dir == "verify" and (args.target is not None or not Path("verify").exists()):
        if args.target is None:
            print("tradewarden audit verify: name the run directory (audit verify DIR)",
                  file=sys.stderr)
            return 2
        return verify(args.target)
    if args.target is not None:
        print(f"tradewarden audit: unexpected argument {args.target!r} (audit DIR, or "
              "audit verify DIR)", file=sys.stderr)
        return 2
    return audit_main(args.dir, reason=args.reason, symbol=args.symbol, as_json=args.json,
                      limit=args.limit)


def _inspect(args: argparse.Namespace) -> int:
    from app.inspect_cli import main as inspect_main

    return inspect_main(args.control, watch=args.watch, peek=args.peek, as_json=args.json,
                        config_path=args.config)


def _exchange(args: argparse.Namespace) -> int:
    from app.exchange_serve import main as exchange_main

    return exchange_main(port=args.port, out=args.out, symbols=args.symbols, seed=args.seed,
                         config_path=args.config, tick_ms=args.tick_ms, protocol=args.protocol)


def _kill_switch(args: argparse.Namespace) -> int:
    from app.inspect_cli import kill_switch

    return kill_switch(args.state == "on", args.reason, args.control, config_path=args.config,
                       run_dir=args.run)


EXIT_CODES = """\
exit codes of run and scenario:
  0  every check ran and held
  1  an invariant or expectation failed, or a check could not run
     (summary.json: invariant_violations, checks_not_run)
  2  bad usage, configuration or input file
  3  the runtime halted (a supervisor gave up, disk full); summary.json: halted
"""


def _strategies_help() -> str:
    """The built-in strategies, one line each (the registry's, so it never goes stale)."""
    from trading.strategy import strategy_summaries

    return "\n".join(f"  {name:<15} {line}" for name, line in strategy_summaries())


def build_parser() -> argparse.ArgumentParser:
    from app.cli_args import parse_duration, parse_symbols

    parser = argparse.ArgumentParser(prog="tradewarden", description=__doc__.splitlines()[0],
                                     epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the main job: trade the synthetic market on the embedded "
                                   "simulated exchange, then print a summary",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="built-in strategies (--strategy NAME; write your own: "
                              "docs/strategies.md):\n" + _strategies_help() + "\n" + EXIT_CODES)
    p.add_argument("--config", metavar="FILE", help="YAML config on top of config/default.yaml")
    p.add_argument("--symbols", metavar="A,B,...", type=parse_symbols,
                   help="exactly the symbols to trade (default: market.symbols)")
    p.add_argument("--duration", type=parse_duration, metavar="TIME",
                   help="run length: seconds (90) or 90s, 5m, 2h (default 30s)")
    p.add_argument("--seed", type=int, help="synthetic market seed")
    p.add_argument("--strategy", metavar="NAME", help="strategy name (default: demo; listed "
                                                      "below)")
    p.add_argument("--drills", action="store_true",
                   help="also run the order-group drills (demo.groups) on a pair of their own: "
                        "a filled pair, a rollback, a handoff to the hedger (embedded exchange "
                        "only; their alerts say DRILL)")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/<timestamp>/)")
    p.add_argument("--exchange", metavar="ws://HOST:PORT",
                   help="trade at a `main.py exchange` server instead of the embedded one")
    p.add_argument("--control", metavar="HOST:PORT",
                   help="serve /metrics, /actors, /healthz here (default: config control "
                        "section, 127.0.0.1:8765; port 0 picks one; 'off' disables)")
    p.add_argument("--venue", metavar="NAME",
                   help="trade at a real venue from the config's venues section (through "
                        "ccxt; its testnet unless the entry says live)")
    p.add_argument("--live", action="store_true",
                   help="allow a venue whose mode is live (real money)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the killed run in DIR from its store, reconciling with the "
                        "exchange first (needs an exchange that kept running: --exchange or "
                        "--venue, the one the run started with)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="place the symbol actors (and their strategies) on a Ray cluster at "
                        "ADDRESS; 'auto' starts a local Ray instance (needs the optional "
                        "extra: pip install -e '.[ray]')")
    p.add_argument("--verbose", action="store_true", help="DEBUG lines in run.log")
    p.set_defaults(func=_run)

    p = sub.add_parser("scenario", help="deterministic scenario run(s) in virtual time; exit 0 "
                                        "only if every expect holds and no invariant broke",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="one run directory per scenario under DIR")
    p.add_argument("--config", metavar="FILE", help="config layer under each scenario's own")
    p.add_argument("--venue", choices=("binanceusdm",), default=None,
                   help="trade through the real ccxt library and that venue's Binance-"
                        "compatible face of the simulated exchange on loopback, instead of the "
                        "embedded venue (same files, same expectations; virtual time)")
    p.set_defaults(func=_scenario)

    p = sub.add_parser("exchange", help="the simulated exchange as a WebSocket server on loopback")
    p.add_argument("--port", type=int, default=8766, help="port (0 picks a free one)")
    p.add_argument("--out", metavar="DIR", default="runs/exchange", help="where events.jsonl goes")
    p.add_argument("--symbols", metavar="A,B,...", type=parse_symbols,
                   help="symbols its own market feed quotes (default: BTCUSDT, ETHUSDT, ...)")
    p.add_argument("--seed", type=int, default=0, help="market feed seed")
    p.add_argument("--tick-ms", type=float, default=100.0, metavar="MS",
                   help="one quote per symbol this often (default 100, like run's own market; "
                        "a strategy's warmup counts these quotes)")
    p.add_argument("--config", metavar="FILE", help="YAML config on top of config/default.yaml "
                                                    "(its exchange section: latency, fees...)")
    p.add_argument("--protocol", choices=("native", "binanceusdm"), default="native",
                   help="native: the simulator's own msgpack WebSocket protocol; binanceusdm: "
                        "Binance USDⓈ-M futures REST + WebSocket streams (the subset ccxt "
                        "uses; API keys from TW_BINANCE_FACE_KEYS=key:secret:account,...)")
    p.set_defaults(func=_exchange)

    p = sub.add_parser("inspect", help="actors, supervisors, mailboxes and dead letters of a "
                                       "running runtime (via its control endpoint)")
    p.add_argument("--control", metavar="HOST:PORT",
                   help="the runtime's control endpoint (default: config control section)")
    p.add_argument("--config", metavar="FILE", help="config whose control section to use")
    p.add_argument("--watch", action="store_true", help="refresh every second until Ctrl-C")
    p.add_argument("--peek", type=int, default=0, metavar="N",
                   help="also list the first N waiting messages of each mailbox")
    p.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("audit", help="query a run's audit trail")
    p.add_argument("dir", metavar="DIR", help="a run directory (or its audit.jsonl); "
                                              "'verify DIR' checks its hash chain")
    p.add_argument("target", nargs="?", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--reason", metavar="R", help="only decisions with this reason code")
    p.add_argument("--symbol", metavar="S", help="only records about this symbol (any case; "
                                                  "a group's records by its legs)")
    p.add_argument("--json", action="store_true", help="print matching records as JSON lines")
    p.add_argument("--limit", type=int, default=50, help="rows in the table (default 50)")
    p.set_defaults(func=_audit)

    p = sub.add_parser("kill-switch", help="engage or release a running runtime's kill switch "
                                           "(through its control endpoint)")
    p.add_argument("state", choices=("on", "off"))
    p.add_argument("--reason", required=True, help="why (audited and alerted)")
    p.add_argument("--control", metavar="HOST:PORT", help="the runtime's control endpoint")
    p.add_argument("--config", metavar="FILE", help="config naming control.token_env")
    p.add_argument("--run", metavar="DIR",
                   help="the run's directory: its endpoint and the token it saved there "
                        "(default: the newest run under runs/ serving --control)")
    p.set_defaults(func=_kill_switch)

    p = sub.add_parser("bench", help="run the benchmark suite (DESIGN section 10)")
    p.add_argument("--quick", action="store_true", help="finish in under a minute")
    p.add_argument("--out", metavar="FILE", help="write the figures as one JSON object")
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
