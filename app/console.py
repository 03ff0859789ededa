"""The terminal of the command line: one place that decides width and pipes.

On a terminal rich measures it. Anywhere else (CI logs, ``| tee``, ``| less``)
rich would assume 80 columns and wrap tables and messages mid-phrase, so a
console that is not a terminal is wide (``COLUMNS`` still wins) and never
soft-wraps a printed line. A reader that goes away early (``| head -1``) ends
the command quietly instead of with a BrokenPipeError traceback, and never
ends a run: its console writes to a stream that drops output once the reader
is gone (the run log and the run directory keep everything).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from rich.console import Console

#: columns of a console that is not a terminal (a log line, not a screen)
PIPE_WIDTH = 200


class ReaderGoneSafe:
    """A text stream that stops writing, silently, once its reader has gone away."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self.gone = True
        try:  # so the interpreter's own flush at exit does not raise it again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def cli_console(stderr: bool = False) -> Console:
    """A rich Console for command output: terminal width on a terminal, else wide;
    a closed pipe silences it instead of raising."""
    stream = sys.stderr if stderr else sys.stdout
    safe = ReaderGoneSafe(stream)
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(file=safe)  # type: ignore[arg-type]  # a wrapper with what rich uses of a file
    return Console(file=safe, width=PIPE_WIDTH, soft_wrap=True)  # type: ignore[arg-type]  # as above


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
