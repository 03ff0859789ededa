"""The terminal of the command line: one place that decides width and pipes.

On a terminal rich measures it. Anywhere else (CI logs, ``| tee``, ``| less``)
rich would assume 80 columns and wrap tables and messages mid-phrase, so a
console that is not a terminal is wide (``COLUMNS`` still wins) and never
soft-wraps a printed line. A reader that goes away early (``| head -1``) ends
the command quietly instead of with a BrokenPipeError traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

#: columns of a console that is not a terminal (a log line, not a screen)
PIPE_WIDTH = 200


def cli_console(stderr: bool = False) -> Console:
    """A rich Console for command output: terminal width on a terminal, else wide."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH, soft_wrap=True)


@contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """Stop writing, without a traceback, when stdout's reader has gone away.

    stdout is pointed at /dev/null afterwards so the interpreter's final flush
    does not raise the same error again on exit."""
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
