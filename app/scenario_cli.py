"""``main.py scenario FILES``: run scenario files, print each verdict, exit by the worst.

The runs themselves are :mod:`app.scenario_runner`'s; this is the command.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from config import ConfigError
from app.scenario_runner import ScenarioError, run_scenario


def main(files: list[str], out: str | None, config_path: str | None = None,
         venue: str | None = None) -> int:
    """Run each file. Exit code (DESIGN section 8): 0 every expect held and every
    invariant ran and held; 1 an expectation or invariant failed or could not be
    checked; 2 a file is missing or invalid (its mistakes named with their lines),
    whatever the others did; 3 a runtime halted (the gravest, it wins over all)."""
    from app.console import cli_console
    from app.logs import RunLogs
    from app.summary import EXIT_FAILED, EXIT_HALTED, EXIT_OK, EXIT_USAGE, summary_table

    console = cli_console()
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        for f in missing:
            print(f"tradewarden scenario: {f}: no such file", file=sys.stderr)
        return 2
    out_root = Path(out) if out else Path("runs") / "scenarios" / time.strftime("%Y%m%dT%H%M%SZ",
                                                                                 time.gmtime())
    out_root.mkdir(parents=True, exist_ok=True)
    failed = invalid = halted = 0
    with RunLogs(out_root) as logs:
        for path in files:
            try:
                result = run_scenario(path, out_root, config_path, logs, venue=venue)
            except ConfigError as exc:
                console.print(f"[red]{path}: invalid scenario[/red]\n{exc}")
                invalid += 1
                continue
            except ScenarioError as exc:
                console.print(f"[red]{path}: {exc}[/red]")
                invalid += 1
                continue
            halted += result.exit_code == EXIT_HALTED
            mark = "[green]PASS[/green]" if result.passed else "[red]FAIL[/red]"
            console.print(f"{mark} {result.name} ({path}, {result.wall_s:.2f}s wall) "
                          f"-> {result.run_dir}")
            if not result.passed:
                failed += 1
                console.print(summary_table(result.summary, result.name))
    bad = failed + invalid
    console.print(f"{len(files) - bad}/{len(files)} scenarios passed"
                  + (f" ({invalid} invalid)" if invalid else ""))
    return (EXIT_HALTED if halted else EXIT_USAGE if invalid else EXIT_FAILED if failed
            else EXIT_OK)
