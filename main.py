"""Tradewarden command line: ``python main.py COMMAND`` (or ``tradewarden COMMAND``).

Commands are thin: each parses its options and hands over to the module
that does the work, imported lazily so ``--help`` is instant and importing
this file has no side effects (rule 14).
"""

from __future__ import annotations

import argparse
import sys


def _bench(args: argparse.Namespace) -> int:
    from runtime.bench.suite import main as bench_main

    return bench_main(quick=args.quick, out=args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradewarden", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
