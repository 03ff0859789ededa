"""Where the logs of a run go: the run directory's ``run.log`` and the terminal.

The run log gets everything from INFO up (DEBUG with ``verbose``), with the
actor's thread name, so "what happened" is answerable after the fact. The
terminal gets warnings and errors only, so the progress display stays
readable. Secrets never reach either: every record goes through the same
redaction as the audit trail. Nothing is configured at import (rule 14).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator

from loguru import logger

from runtime.redact import redact_text

if TYPE_CHECKING:
    from loguru import Record

FILE_FORMAT = ("{time:YYYY-MM-DDTHH:mm:ss.SSSZ} | {level: <8} | {thread.name: <16} | "
               "{name}:{function}:{line} - {message}")


def _redacting(record: Record) -> bool:
    record["message"] = redact_text(record["message"])
    return True


class RunLogFile:
    """``run.log`` as a loguru sink that survives a full disk: the first failed
    write is said once on stderr and the file is given up (the terminal keeps
    the warnings), instead of a traceback on stderr for every line after it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by stop()

    def write(self, message: str) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(message)
            self._fh.flush()
        except OSError as exc:
            self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        fh, self._fh = self._fh, None
        print(f"tradewarden: {self.path} cannot be written any more ({exc}); "
              "the run log goes on in the terminal only", file=sys.stderr)
        try:
            fh.close()
        except OSError:
            pass

    def stop(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass


class RunLogs:
    """Installs the run's log sinks; ``close`` restores loguru's default."""

    def __init__(self, run_dir: Path | None, *, console_level: str = "WARNING",
                 verbose: bool = False) -> None:
        self.run_dir = run_dir
        self.console_level = console_level
        self.verbose = verbose
        self._ids: list[int] = []

    def __enter__(self) -> RunLogs:
        logger.remove()
        self._ids.append(logger.add(sys.stderr, level=self.console_level, filter=_redacting,
                                    format="<level>{level: <8}</level> {message}"))
        if self.run_dir is not None:
            self._ids.append(self._file_sink(self.run_dir))
        return self

    def _file_sink(self, run_dir: Path) -> int:
        return logger.add(RunLogFile(run_dir / "run.log"),
                          level="DEBUG" if self.verbose else "INFO",
                          format=FILE_FORMAT, filter=_redacting, enqueue=False, colorize=False)

    @contextmanager
    def also_to(self, run_dir: Path) -> Iterator[None]:
        """Also write ``run_dir/run.log`` while the block runs: each scenario's
        directory holds its own run log (DESIGN section 8), beside the
        combined one of the whole ``scenario`` command."""
        sink = self._file_sink(run_dir)
        try:
            yield
        finally:
            logger.remove(sink)

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for sink_id in self._ids:
            try:
                logger.remove(sink_id)
            except ValueError:
                pass
        self._ids.clear()
        logger.add(sys.stderr, level="INFO")
