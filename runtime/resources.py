"""Failures no restart can cure: the disk is full.

A supervisor restarts a crashed child because a fresh instance usually
works. A write that failed with ``ENOSPC`` (or a quota's ``EDQUOT``) fails
again in the new instance, so restarting only turns one failure into a crash
loop, several alerts and a summary that never gets written. Such a failure
is recognised here, wherever it sits in the exception chain (a supervisor
escalating carries its child's error as the cause), and the supervisor gives
up at once: the tree stops in order, the runtime halts fail closed with the
cause, and ``run`` exits with code 3.
"""

from __future__ import annotations

import errno

#: errno values that mean "no room to write"
_FULL = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded"}
#: how far along __cause__ / __context__ to look
_DEPTH = 8


def exhausted(exc: BaseException | None) -> str | None:
    """``"disk full: <error>"`` when ``exc`` (or what caused it) is a full disk, else None."""
    chain: list[BaseException] = []
    while exc is not None and len(chain) < _DEPTH:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for err in reversed(chain):  # the root cause names it best
        if isinstance(err, OSError) and err.errno in _FULL:
            return f"{_FULL[err.errno]}: {err!r}"
    for err in reversed(chain):
        if "No space left on device" in str(err):  # lmdb and others that drop the errno
            return f"disk full: {err!r}"
    return None
