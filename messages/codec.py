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
import threading
from datetime import datetime, timedelta, UTC
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import partial
from typing import Any

import msgpack

from messages.base import SCHEMA_VERSION, Message, MessageError, message_type
from messages.enums import ENUM_TYPES

EXT_DECIMAL = 1
EXT_DATETIME = 2
EXT_ENUM = 3
EXT_MESSAGE = 4

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC = UTC
_I64 = struct.Struct(">q")

# Per-message costs that do not depend on the message (every order crosses
# the codec at least twice on its way to the exchange and back), paid once:
#: field names per message class (``dataclasses.fields`` rebuilds a tuple)
_FIELDS: dict[type, tuple[str, ...]] = {}
# One msgpack Packer per thread and nesting depth (a nested message is packed
# from inside ``_default`` while its parent's Packer is busy). ``packb``
# builds a Packer with a 256 KiB buffer on every call, which costs more than
# packing an order; a reused Packer resets after each ``pack``, error or not.
_local = threading.local()
_PACKER_BUF = 4096  # grows on demand; most frames are a few hundred bytes
# ``ExtType(code, data)`` without its argument checks (a Python ``__new__``):
# our codes are constants in range and the data is always bytes
_ext = partial(tuple.__new__, msgpack.ExtType)


class CodecError(ValueError):
    """Bytes that are not a valid, known Tradewarden message."""


def _default(obj: Any) -> msgpack.ExtType:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise CodecError(f"cannot encode non-finite Decimal {obj}")
        return _ext((EXT_DECIMAL, str(obj).encode("ascii")))
    if isinstance(obj, Enum):
        return _enum_ext(obj)
    if isinstance(obj, datetime):
        if obj.tzinfo is None:
            raise CodecError("cannot encode a naive datetime; timestamps must be UTC-aware")
        # (already UTC, the common case: astimezone would only copy it)
        delta = (obj if obj.tzinfo is _UTC else obj.astimezone(_UTC)) - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return _ext((EXT_DATETIME, _I64.pack(micros)))
    if isinstance(obj, Message):
        return _ext((EXT_MESSAGE, encode(obj)))
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


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)
        names = tuple(f.name for f in fields)
        # Fields typed Any/dict/Mapping hold free-form values: a str enum in
        # there would be packed as its plain str (it is one) and no field type
        # would turn it back on decode, so those values are walked (below).
        # Written before _FIELDS: another thread that finds _FIELDS[cls] set
        # skips this function and reads _FREE_FORM[cls] at once.
        _FREE_FORM[cls] = tuple(f.name for f in fields
                                if any(w in str(f.type) for w in ("Any", "dict", "Mapping")))
        _FIELDS[cls] = names
    return names


#: per message class: the fields whose values may hold enums no field type restores
_FREE_FORM: dict[type, tuple[str, ...]] = {}
_LEAVES = frozenset((str, int, float, bool, type(None), bytes, Decimal, datetime))


def _enum_ext(obj: Enum) -> msgpack.ExtType:
    return msgpack.ExtType(EXT_ENUM, msgpack.packb([type(obj).__name__, obj.value]))


def _tag_enums(value: Any) -> Any:
    """``value`` with every enum inside (at any depth) replaced by its ext type;
    containers are copied only when they hold one."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if isinstance(value, Enum):
        # only enums the decoder knows travel as enums; any other keeps its
        # plain value, as before (it would otherwise not decode at all)
        return _enum_ext(value) if ENUM_TYPES.get(type(value).__name__) is kind else value
    if isinstance(value, dict):
        items = {k: _tag_enums(v) for k, v in value.items()}
        return items if any(items[k] is not v for k, v in value.items()) else value
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        seq = [_tag_enums(v) for v in value]
        return kind(seq) if any(a is not b for a, b in zip(seq, value, strict=True)) else value
    return value


def to_wire(msg: Message) -> dict[str, Any]:
    cls = type(msg)
    names = _FIELDS.get(cls)
    if names is None:
        if not isinstance(msg, Message) or not dataclasses.is_dataclass(msg):
            raise CodecError(f"not a message: {cls.__name__}")
        names = _field_names(cls)
    fields = {name: getattr(msg, name) for name in names}
    for name in _FREE_FORM[cls]:
        fields[name] = _tag_enums(fields[name])
    return {"v": SCHEMA_VERSION, "t": cls.__name__, "f": fields}


def encode(msg: Message) -> bytes:
    """Message -> bytes. Raises CodecError for values that cannot travel."""
    local = _local
    packers = getattr(local, "packers", None)
    if packers is None:
        packers = local.packers = []
        local.depth = 0
    depth = local.depth
    if depth < len(packers):
        packer = packers[depth]
    else:
        packer = msgpack.Packer(default=_default, use_bin_type=True, buf_size=_PACKER_BUF)
        if depth < 4:  # messages nest one or two deep; deeper ones pay for a new Packer
            packers.append(packer)
    local.depth = depth + 1
    try:
        out: bytes = packer.pack(to_wire(msg))
        return out
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {type(msg).__name__}: {exc}") from None
    finally:
        local.depth = depth


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
    extra = set(fields).difference(_field_names(cls))
    if extra:
        raise CodecError(f"{name}: unknown field(s) {sorted(map(str, extra))}")
    try:
        return cls(**fields)
    except MessageError as exc:
        raise CodecError(f"{name}: {exc}") from None
    except TypeError as exc:
        raise CodecError(f"{name}: {exc}") from None


def decode(data: bytes | bytearray | memoryview) -> Message:
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
