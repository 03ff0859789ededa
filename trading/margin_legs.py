"""The margin check's input: a portfolio as numpy arrays (``LegArrays``).

``Leg`` is one position or order leg at the boundary (Decimal-friendly);
``LegArrays`` is the immutable structure-of-arrays snapshot the kernel in
``trading.margin`` reads, validated once when built, with the derived
arrays the kernel needs (weights, contiguous option legs) computed here, so
a snapshot can be handed to the shared executor and priced many times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple
from collections.abc import Iterable

import numpy as np

STOCK, CALL, PUT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Leg:
    """One position or order leg at the boundary (Decimal or numbers).

    ``qty`` is signed (long > 0, short < 0) in contracts or shares; for stock
    and futures legs ``strike``, ``expiry_years`` and ``iv`` are ignored.
    """

    kind: int
    qty: Decimal | float | int
    spot: Decimal | float | int
    strike: Decimal | float | int = 0
    expiry_years: Decimal | float | int = 0
    iv: Decimal | float | int = 0
    half_spread: Decimal | float | int = 0
    multiplier: Decimal | float | int = 1
    underlying: str = ""


_FLOAT_FIELDS = ("qty", "spot", "strike", "expiry_years", "iv", "half_spread", "multiplier")


class _Options(NamedTuple):
    """The option legs only, as contiguous arrays: what Black-Scholes needs.

    ``sk`` stacks spot over strike and ``w2`` weight over minus weight, so one
    multiply gives both sums' weights (w*S for N(d1), -w*K for N(d2));
    ``spot``, ``strike`` and ``w`` are rows of them.
    """

    spot: np.ndarray
    strike: np.ndarray
    sk: np.ndarray       # (2, n): spot, strike
    expiry_years: np.ndarray
    iv: np.ndarray
    w: np.ndarray        # qty * multiplier
    w2: np.ndarray       # (2, n): w, -w
    key: np.ndarray      # underlying * 2 + is_put, for the naked-short base


@dataclass(frozen=True, eq=False)
class LegArrays:
    """A portfolio as numpy structure-of-arrays (float64; ``kind`` int8).

    Arrays are copied and made read-only, so a LegArrays is an immutable
    snapshot that can be handed to the shared executor. Derived private
    fields are computed once here from the same snapshot: weights that depend
    only on the legs' structure, and contiguous copies of the option legs so
    the margin kernel runs Black-Scholes on options only (stock and futures
    legs are linear and need no pricing).
    """

    kind: np.ndarray
    qty: np.ndarray
    spot: np.ndarray
    strike: np.ndarray
    expiry_years: np.ndarray
    iv: np.ndarray
    half_spread: np.ndarray
    multiplier: np.ndarray
    underlying: np.ndarray | None = None
    _w_lin: np.ndarray = field(init=False, repr=False)
    _abs_w: np.ndarray = field(init=False, repr=False)
    _opt: _Options = field(init=False, repr=False)
    _n_keys: int = field(init=False, repr=False)
    _any_short_option: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        kind = np.array(self.kind, dtype=np.int8, copy=True).reshape(-1)
        n = kind.shape[0]
        put(self, "kind", kind)
        for name in _FLOAT_FIELDS:
            arr = np.array(getattr(self, name), dtype=np.float64, copy=True).reshape(-1)
            if arr.shape[0] != n:
                raise ValueError(f"LegArrays.{name}: length {arr.shape[0]}, expected {n}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"LegArrays.{name}: values must be finite")
            put(self, name, arr)
        if self.underlying is None:
            und = np.arange(n, dtype=np.int64)
        else:
            und = np.array(self.underlying, dtype=np.int64, copy=True).reshape(-1)
            if und.shape[0] != n or (n and und.min() < 0):
                raise ValueError("LegArrays.underlying: one id >= 0 per leg")
        put(self, "underlying", und)

        if n and (kind.min() < STOCK or kind.max() > PUT):
            raise ValueError("LegArrays.kind: 0 (stock/future), 1 (call) or 2 (put)")
        option = kind != STOCK
        if np.any(self.spot <= 0):
            raise ValueError("LegArrays.spot: must be > 0")
        if np.any(self.multiplier <= 0) or np.any(self.half_spread < 0):
            raise ValueError("LegArrays: multiplier must be > 0, half_spread >= 0")
        if np.any(option & ((self.strike <= 0) | (self.expiry_years < 0) | (self.iv < 0))):
            raise ValueError("LegArrays: options need strike > 0, expiry_years >= 0, iv >= 0")

        w = self.qty * self.multiplier
        lin = np.where(kind == STOCK, 1.0, np.where(kind == PUT, -1.0, 0.0))
        put(self, "_w_lin", w * lin)   # stock legs, and the -S term of put parity
        put(self, "_abs_w", np.abs(w))
        sel = np.flatnonzero(option)
        w_opt = w[sel]
        key = und[sel] * 2 + (kind[sel] == PUT)
        sk = np.stack([self.spot[sel], self.strike[sel]])
        w2 = np.stack([w_opt, -w_opt])
        opt = _Options(
            spot=sk[0], strike=sk[1], sk=sk, expiry_years=self.expiry_years[sel],
            iv=self.iv[sel], w=w2[0], w2=w2, key=key,
        )
        put(self, "_opt", opt)
        put(self, "_n_keys", int(key.max()) + 1 if len(key) else 0)
        put(self, "_any_short_option", bool(np.any(w_opt < 0)))
        for arr in (kind, und, self._w_lin, self._abs_w, *opt,
                    *(getattr(self, name) for name in _FLOAT_FIELDS)):
            arr.setflags(write=False)

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @classmethod
    def from_legs(cls, legs: Iterable[Leg], underlying_ids: dict[str, int] | None = None) -> LegArrays:
        """Build from boundary ``Leg`` objects (Decimal-friendly).

        Legs with the same non-empty ``underlying`` name share an id (so a long
        option can cover a short one); unnamed legs each get their own id.
        Pass ``underlying_ids`` to keep ids stable across calls.
        """
        legs = list(legs)
        ids = {} if underlying_ids is None else underlying_ids
        und = []
        for leg in legs:
            if leg.underlying:
                und.append(ids.setdefault(leg.underlying, len(ids)))
            else:
                und.append(-1)
        next_id = max(ids.values(), default=-1) + 1
        for i, u in enumerate(und):
            if u < 0:
                und[i], next_id = next_id, next_id + 1
        cols = {name: [float(getattr(leg, name)) for leg in legs] for name in _FLOAT_FIELDS}
        return cls(kind=np.asarray([int(leg.kind) for leg in legs]), underlying=np.asarray(und),
                   **{name: np.asarray(col) for name, col in cols.items()})

    @classmethod
    def empty(cls) -> LegArrays:
        z = np.zeros(0)
        return cls(kind=np.zeros(0, np.int8), qty=z, spot=z, strike=z, expiry_years=z,
                   iv=z, half_spread=z, multiplier=z)

    def concat(self, other: LegArrays) -> LegArrays:
        """Portfolio + group. Underlying ids must come from one numbering."""
        return LegArrays(
            kind=np.concatenate([self.kind, other.kind]),
            underlying=np.concatenate([self.underlying, other.underlying]),
            **{name: np.concatenate([getattr(self, name), getattr(other, name)])
               for name in _FLOAT_FIELDS},
        )
