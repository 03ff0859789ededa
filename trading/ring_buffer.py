"""The ring buffer symbol actors keep their market data in (quotes, bars).

Preallocated float64 columns: no allocation per tick, so memory stays flat
however long the run (rule 13). What the feature kernels (``trading.features``)
and the strategies read are views of it.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Fixed-size columnar ring of float64 rows, mirrored, plus a snapshot area.

    Every row is written twice, at ``head`` and ``head + size`` of a
    ``2 * size`` wide array, so the last ``n`` rows are always one contiguous,
    chronological slice (:meth:`window`): reading them costs a view, never a
    copy. That is what an inline computation and the strategy read, on the
    actor's own thread, between two pushes.

    ``snapshot`` copies the rows, oldest first, into ``scratch`` and returns
    how many there are; the copy is what a computation on the executor reads
    while new rows keep arriving in ``data``. Both arrays are allocated once;
    ``scratch`` only when first used, so an inline symbol actor (which never
    snapshots) does not carry it: at 1,000 symbols that is ~36 MB. A snapshot
    with no push since the last one is free.
    """

    __slots__ = ("data", "_scratch", "size", "head", "count", "version", "_snapped", "_pairs",
                 "_columns")

    def __init__(self, columns: int, size: int) -> None:
        self.data = np.zeros((columns, 2 * size), dtype=np.float64)
        self._scratch: np.ndarray | None = None  # made by the first snapshot
        self.size = size
        self.head = 0  # next row to write
        self.count = 0
        self.version = 0
        self._snapped = -1
        # _pairs[h] is the (2, columns) pair of cells row h is written to: one
        # numpy assignment writes both mirrors.
        item = self.data.itemsize
        self._pairs = np.lib.stride_tricks.as_strided(
            self.data, shape=(size, 2, columns), strides=(item, size * item, 2 * size * item))
        # read-only views of each whole column: slices of them are read-only too
        cols = []
        for c in range(columns):
            col = self.data[c].view()
            col.flags.writeable = False
            cols.append(col)
        self._columns = tuple(cols)

    def push(self, row: tuple[float, ...]) -> None:
        h = self.head
        self._pairs[h] = row
        self.head = h + 1 if h + 1 < self.size else 0
        if self.count < self.size:
            self.count += 1
        self.version += 1

    def window(self, n: int) -> np.ndarray:
        """The last ``n`` rows (``n <= count``), oldest first: a view into ``data``,
        valid until the next push."""
        end = self.head + self.size
        return self.data[:, end - n:end]

    def columns(self, n: int) -> list[np.ndarray]:
        """The last ``n`` rows as one read-only 1-D view per column (no copy)."""
        end = self.head + self.size
        start = end - n
        return [c[start:end] for c in self._columns]

    @property
    def scratch(self) -> np.ndarray:
        """The snapshot area (allocated once, on first use)."""
        if self._scratch is None:
            self._scratch = np.zeros((self.data.shape[0], self.size), dtype=np.float64)
        return self._scratch

    def snapshot(self) -> int:
        n = self.count
        if self._snapped == self.version:
            return n
        self._snapped = self.version
        self.scratch[:, :n] = self.window(n)
        return n

    def view(self, n: int) -> np.ndarray:
        """The first ``n`` snapshot rows as a read-only view (no copy)."""
        v = self.scratch[:, :n]
        v.flags.writeable = False
        return v

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + (0 if self._scratch is None else self._scratch.nbytes)
