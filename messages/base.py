"""Base machinery for Tradewarden messages.

Every message is a frozen, slotted dataclass registered by name, so the
msgpack codec can rebuild it from bytes and the runtime can dispatch on its
type. Prices and quantities are ``Decimal``; timestamps are timezone-aware
UTC ``datetime`` objects. Validation happens in ``__post_init__`` so that a
malformed message is refused where it is built, not deep inside a handler.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, UTC
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar, dataclass_transform

SCHEMA_VERSION = 1

_REGISTRY: dict[str, type[Message]] = {}

T = TypeVar("T", bound="type[Message]")


class MessageError(ValueError):
    """A message was built with an invalid field value."""


class Message:
    """Base class of every message type (see :func:`message`)."""

    __slots__ = ()

    #: Market data may be conflated in a mailbox: when a newer message with
    #: the same key is queued, it replaces the older one. Orders, fills and
    #: control messages return ``None`` and are never conflated.
    conflatable: ClassVar[bool] = False
    #: Market data waits in the market lane of a mailbox that has one, behind
    #: every order, fill and control message (runtime.mailbox).
    market_data: ClassVar[bool] = False

    def conflation_key(self) -> Any:
        return None

    def replace(self, **changes: Any) -> Message:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]  # subclasses are dataclasses (@message); the base is not


@dataclass_transform(frozen_default=True)
def message(cls: T) -> T:
    """Class decorator: make ``cls`` a frozen slotted dataclass and register it.

    Declared with ``dataclass_transform`` so a type checker sees the generated
    ``__init__`` and checks every message constructor's arguments.
    """
    name = cls.__name__
    prev = _REGISTRY.get(name)
    if prev is not None and (prev.__module__, prev.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"message type name {name!r} registered twice "
                        f"({prev.__module__} and {cls.__module__}); the codec needs unique names")
    dc = dataclasses.dataclass(frozen=True, slots=True)(cls)
    _REGISTRY[name] = dc
    return dc  # type: ignore[return-value]  # dataclass() returns the class it was given


def registry() -> dict[str, type[Message]]:
    """Registered message types by name (read-only view for the codec)."""
    return dict(_REGISTRY)


def message_type(name: str) -> type[Message] | None:
    return _REGISTRY.get(name)


# -- field validators, used from __post_init__ --------------------------------

_ZERO = Decimal(0)


def to_decimal(value: Any, field: str, *, where: str = "") -> Decimal:
    """Coerce ``value`` to a finite Decimal or raise a MessageError naming ``field``."""
    if isinstance(value, bool):
        raise MessageError(f"{where}{field}: expected a decimal number, got {value!r}")
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, (int, str)):
        try:
            dec = Decimal(value)
        except (InvalidOperation, ValueError):
            raise MessageError(f"{where}{field}: {value!r} is not a decimal number") from None
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise MessageError(f"{where}{field}: {value!r} is not a finite number")
        dec = Decimal(repr(value))
    else:
        raise MessageError(f"{where}{field}: expected a decimal number, got {type(value).__name__}")
    if not dec.is_finite():
        raise MessageError(f"{where}{field}: {value!r} is not a finite number")
    return dec


def check_decimal(obj: Message, field: str, *, positive: bool = False,
                  non_negative: bool = False, optional: bool = False) -> None:
    """Validate (and coerce in place) a Decimal field of a frozen message."""
    value = getattr(obj, field)
    # Fast path, same outcome: a finite Decimal in range needs no coercion (every
    # decoded order and fill comes here several times; the general path builds
    # its error prefix up front)
    if type(value) is Decimal and value.is_finite() and not (
            (positive and value <= _ZERO) or (non_negative and value < _ZERO)):
        return
    if value is None:
        if optional:
            return
        raise MessageError(f"{type(obj).__name__}.{field}: missing")
    dec = to_decimal(value, field, where=f"{type(obj).__name__}.")
    if positive and dec <= 0:
        raise MessageError(f"{type(obj).__name__}.{field}: must be > 0, got {dec}")
    if non_negative and dec < 0:
        raise MessageError(f"{type(obj).__name__}.{field}: must be >= 0, got {dec}")
    if dec is not value:
        object.__setattr__(obj, field, dec)


def check_utc(obj: Message, field: str, *, optional: bool = False) -> None:
    value = getattr(obj, field)
    if type(value) is datetime and value.tzinfo is UTC:
        return  # already aware UTC (the common case)
    if value is None and optional:
        return
    if not isinstance(value, datetime):
        raise MessageError(f"{type(obj).__name__}.{field}: expected a datetime, got {value!r}")
    offset = value.utcoffset()
    if value.tzinfo is None or offset is None:
        raise MessageError(f"{type(obj).__name__}.{field}: datetime must be timezone-aware UTC")
    if offset.total_seconds() != 0:
        object.__setattr__(obj, field, value.astimezone(UTC))


def check_str(obj: Message, field: str, *, optional: bool = False) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise MessageError(f"{type(obj).__name__}.{field}: expected a non-empty string, got {value!r}")


def utc_now() -> datetime:
    return datetime.now(UTC)
