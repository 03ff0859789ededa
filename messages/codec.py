"""msgpack codec for every registered message type.

Wire and storage format (schema version in every frame)::

    {"v": SCHEMA_VERSION, "t": "<MessageTypeName>", "f": {field: value, ...}}

Decimal, datetime, enums and nested messages travel as msgpack ext types so
that nothing is ever silently turned into a float or a naive timestamp.
Anything that cannot be decoded into a valid message raises ``CodecError``
naming the problem; a receiver catches that one type and keeps running.
"""

from __future__ import annotations

import dataclasses
import struct
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

import msgpack

from messages.base import SCHEMA_VERSION, Message, MessageError, message_type
from messages.enums import ENUM_TYPES

EXT_DECIMAL = 1
EXT_DATETIME = 2
EXT_ENUM = 3
EXT_MESSAGE = 4

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_I64 = struct.Struct(">q")


class CodecError(ValueError):
    """Bytes that are not a valid, known Tradewarden message."""


def _default(obj: Any) -> msgpack.ExtType:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise CodecError(f"cannot encode non-finite Decimal {obj}")
        return msgpack.ExtType(EXT_DECIMAL, str(obj).encode("ascii"))
    if isinstance(obj, Enum):
        return msgpack.ExtType(EXT_ENUM, msgpack.packb([type(obj).__name__, obj.value]))
    if isinstance(obj, datetime):
        if obj.tzinfo is None:
            raise CodecError("cannot encode a naive datetime; timestamps must be UTC-aware")
        delta = obj.astimezone(timezone.utc) - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return msgpack.ExtType(EXT_DATETIME, _I64.pack(micros))
    if isinstance(obj, Message):
        return msgpack.ExtType(EXT_MESSAGE, encode(obj))
    raise CodecError(f"cannot encode value of type {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_DECIMAL:
        try:
            value = Decimal(data.decode("ascii"))
        except (InvalidOperation, UnicodeDecodeError):
            raise CodecError(f"bad Decimal payload {data[:40]!r}") from None
        if not value.is_finite():
            raise CodecError(f"non-finite Decimal {value}")
        return value
    if code == EXT_DATETIME:
        if len(data) != 8:
            raise CodecError(f"bad datetime payload of {len(data)} bytes")
        from datetime import timedelta

        try:
            return _EPOCH + timedelta(microseconds=_I64.unpack(data)[0])
        except OverflowError:
            raise CodecError("datetime out of range") from None
    if code == EXT_ENUM:
        try:
            name, value = msgpack.unpackb(data, raw=False)
            return ENUM_TYPES[name](value)
        except (KeyError, ValueError, TypeError, msgpack.UnpackException):
            raise CodecError(f"unknown enum value {data[:60]!r}") from None
    if code == EXT_MESSAGE:
        return decode(data)
    raise CodecError(f"unknown ext type {code}")


def to_wire(msg: Message) -> dict[str, Any]:
    if not isinstance(msg, Message) or not dataclasses.is_dataclass(msg):
        raise CodecError(f"not a message: {type(msg).__name__}")
    fields = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
    return {"v": SCHEMA_VERSION, "t": type(msg).__name__, "f": fields}


def encode(msg: Message) -> bytes:
    """Message -> bytes. Raises CodecError for values that cannot travel."""
    try:
        return msgpack.packb(to_wire(msg), default=_default, use_bin_type=True)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {type(msg).__name__}: {exc}") from None


def from_wire(obj: Any) -> Message:
    if not isinstance(obj, dict):
        raise CodecError(f"frame is a {type(obj).__name__}, expected a map")
    version = obj.get("v")
    if version != SCHEMA_VERSION:
        raise CodecError(f"unsupported schema version {version!r} (this build reads {SCHEMA_VERSION})")
    name = obj.get("t")
    cls = message_type(name) if isinstance(name, str) else None
    if cls is None:
        raise CodecError(f"unknown message type {name!r}")
    fields = obj.get("f")
    if not isinstance(fields, dict):
        raise CodecError(f"{name}: fields must be a map")
    known = {f.name for f in dataclasses.fields(cls)}
    extra = set(fields) - known
    if extra:
        raise CodecError(f"{name}: unknown field(s) {sorted(map(str, extra))}")
    try:
        return cls(**fields)
    except MessageError as exc:
        raise CodecError(f"{name}: {exc}") from None
    except TypeError as exc:
        raise CodecError(f"{name}: {exc}") from None


def decode(data: bytes) -> Message:
    """bytes -> Message. Any malformed input raises CodecError, nothing else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    try:
        obj = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, use_list=False,
                              strict_map_key=True)
    except CodecError:
        raise
    except RecursionError:
        raise CodecError("frame nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types on garbage
        raise CodecError(f"undecodable bytes: {type(exc).__name__}: {exc}") from None
    return from_wire(obj)
