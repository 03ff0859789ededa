"""Codec: every registered message type round-trips; garbage only raises CodecError.

Strategies are built from each dataclass's field types, so a message type
added later is covered without touching this file. A field type with no
strategy fails loudly (extend ``strategy_for``), never silently skipped.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
import typing
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, UTC
from decimal import Decimal
from enum import Enum
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import messages
from messages.base import Message, MessageError, registry
from messages.codec import CodecError, decode, encode
from runtime import Actor, ChildSpec, handles

# Register every message type of the package, including modules added later.
for _mod in pkgutil.walk_packages(messages.__path__, "messages."):
    importlib.import_module(_mod.name)


def product_messages() -> dict[str, type[Message]]:
    """Registered types, minus throwaway ones that tests define for themselves."""
    return {name: cls for name, cls in registry().items()
            if not cls.__module__.split(".")[0].startswith(("test", "conftest"))}


# -- strategies from field types ------------------------------------------------

# hypothesis takes naive bounds and adds the time zone itself
UTC_TIMES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1),  # noqa: DTZ001
                         timezones=st.just(UTC))
OFFSET_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 31),  # noqa: DTZ001 - naive bounds
    timezones=st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23),
                                                max_value=timedelta(hours=23))))
# Mostly positive (prices, sizes), sometimes anything finite (signs, huge exponents).
DECIMALS = st.one_of(
    st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e9"), places=8),
    st.integers(min_value=1, max_value=10**6).map(Decimal),
    st.decimals(allow_nan=False, allow_infinity=False),
)
INTS = st.one_of(st.integers(min_value=0, max_value=1000),
                 st.integers(min_value=-(2**63), max_value=2**64 - 1))
TEXT = st.text(min_size=1, max_size=12)
# Values an ``Any`` field may hold: what the codec carries. Tuples, not lists:
# the codec returns arrays as tuples, so a list would not compare equal.
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.text(max_size=12), st.binary(max_size=16),
                    DECIMALS, UTC_TIMES)
ANY_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4).map(tuple),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def known_strings(cls: type) -> list[str]:
    """Strings a field may be restricted to: str members of tuple/set constants on
    the class or in its module (e.g. ``SEVERITIES``), so that validated
    string fields are still hit often without a hand-written strategy."""
    found: set[str] = set()
    module = importlib.import_module(cls.__module__)
    for value in [*vars(cls).values(), *vars(module).values()]:
        if isinstance(value, (tuple, frozenset, set)) and value and all(
                isinstance(v, str) for v in value):
            found.update(value)
    return sorted(found)


def strategy_for(tp: Any, owner: type | None = None) -> st.SearchStrategy:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, typing.NewType):  # Price, Quantity, Symbol...: their base type
        return strategy_for(tp.__supertype__, owner)
    if origin is Future or tp is Future:  # an in-process ack: never on the wire
        return st.nothing()
    if tp is str and owner is not None and known_strings(owner):
        return st.one_of(TEXT, st.sampled_from(known_strings(owner)))
    if tp is Any:
        return ANY_VALUES
    if tp is type(None):
        return st.none()
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy_for(a, owner) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return INTS
    if tp is str:
        return TEXT
    if tp is bytes:
        return st.binary(max_size=32)
    if tp is float:
        return st.floats(allow_nan=False)
    if tp is Decimal:
        return DECIMALS
    if tp is datetime:
        return st.one_of(UTC_TIMES, OFFSET_TIMES)
    if inspect.isclass(tp) and issubclass(tp, Enum):
        return st.sampled_from(list(tp))
    if inspect.isclass(tp) and issubclass(tp, Message):
        return st.deferred(lambda: message_strategy(tp))
    if origin is tuple or tp is tuple:
        if not args:
            return st.lists(ANY_VALUES, max_size=3).map(tuple)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is list or tp is list:
        return st.lists(strategy_for(args[0]) if args else ANY_VALUES, max_size=3)
    if origin is dict or tp is dict:
        keys = strategy_for(args[0]) if args else st.text(max_size=8)
        values = strategy_for(args[1]) if args else ANY_VALUES
        return st.dictionaries(keys, values, max_size=4)
    raise TypeError(f"no hypothesis strategy for field type {tp!r}; "
                    "extend strategy_for() in tests/test_codec.py")


_CACHE: dict[type, st.SearchStrategy] = {}


def message_strategy(cls: type[Message]) -> st.SearchStrategy:
    """Valid instances of ``cls``: draw fields, retry while the validators refuse."""
    if cls in _CACHE:
        return _CACHE[cls]
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name], cls) for f in dataclasses.fields(cls)}
    kwargs_strategy = st.fixed_dictionaries(fields)

    @st.composite
    def build(draw: Any) -> Message:
        for _ in range(10):
            try:
                return cls(**draw(kwargs_strategy))
            except MessageError:
                continue
        reject()

    _CACHE[cls] = build()
    return _CACHE[cls]


def assert_same(a: Any, b: Any, path: str = "msg") -> None:
    """Equal values AND equal types all the way down (Side.BUY == "buy" is not enough)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} came back as {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, Decimal):
        assert str(a) == str(b), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, datetime):
        assert a == b and b.utcoffset() == timedelta(0), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# -- round trip -------------------------------------------------------------------

ALL = sorted(product_messages())
PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_registry_covers_the_package() -> None:
    for name in ("Quote", "Bar", "Signal", "OrderRequest", "OrderFilled", "Put", "PutMany",
                 "Durable"):
        assert name in ALL


@pytest.mark.parametrize("name", ALL)
@PROPERTY
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    cls = registry()[name]
    msg = data.draw(message_strategy(cls), label=name)
    raw = encode(msg)
    back = decode(raw)
    assert back == msg
    assert_same(msg, back)
    assert encode(back) == raw, "re-encoding must give the same bytes"


@pytest.mark.parametrize("name", ALL)
@PROPERTY
@given(data=st.data())
def test_damaged_frames_raise_codec_error(name: str, data: st.DataObject) -> None:
    """A valid frame cut short or with a byte changed: a message or CodecError, never more."""
    raw = bytearray(encode(data.draw(message_strategy(registry()[name]))))
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
    else:
        pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
        raw[pos] = data.draw(st.integers(0, 255), label="byte")
    try:
        out = decode(bytes(raw))
    except CodecError:
        return
    assert isinstance(out, Message)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_garbage_bytes_only_raise_codec_error(raw: bytes) -> None:
    try:
        out = decode(raw)
    except CodecError:
        return
    assert isinstance(out, Message)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                              st.text(max_size=8), st.binary(max_size=8)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.text(max_size=4), inner,
                                                            max_size=4)),
                    max_leaves=10),
       st.sampled_from(ALL))
def test_well_formed_msgpack_of_the_wrong_shape(obj: Any, name: str) -> None:
    """Valid msgpack that is not a valid frame, also dressed up as a known type."""
    for candidate in (obj, {"v": 1, "t": name, "f": obj}, {"v": 99, "t": name, "f": {}}):
        try:
            out = decode(msgpack.packb(candidate, use_bin_type=True))
        except CodecError:
            continue
        assert isinstance(out, Message)


def test_enum_inside_an_any_field_keeps_its_type() -> None:
    """msgpack packs a str enum as its plain str (it subclasses str); in a typed
    field the message restores it, in a free-form (Any/dict) field nothing would."""
    from messages import Durable, ExchangeFault, OrderPurpose, Side

    payload = {"side": Side.BUY, "legs": [Side.SELL, ("x", OrderPurpose.HEDGE)], "n": 1, "s": "buy"}
    back = decode(encode(Durable(result=payload)))
    assert back.result["side"] is Side.BUY
    assert back.result["legs"][0] is Side.SELL and back.result["legs"][1][1] is OrderPurpose.HEDGE
    assert back.result["s"] == "buy" and type(back.result["s"]) is str
    assert decode(encode(Durable(result=Side.SELL))).result is Side.SELL
    plain = {"reject_next": {"reason": "x"}}
    assert decode(encode(ExchangeFault(plain))).spec == plain
    from trading.reasons import Reason  # a str enum the codec does not register
    back = decode(encode(ExchangeFault({"reject_next": {"reason": Reason.APPROVED}})))
    assert back.spec == {"reject_next": {"reason": "approved"}}, "unknown enums travel as values"


def test_non_bytes_input_is_a_codec_error() -> None:
    for bad in (None, "text", 42, ["x"]):
        with pytest.raises(CodecError):
            decode(bad)  # type: ignore[arg-type]  # not bytes on purpose: refused


# -- a receiver survives bad bytes ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """Raw bytes off a wire (runtime-local: the thing being decoded)."""

    data: bytes


class Receiver(Actor):
    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.good: list[Message] = []
        self.bad: list[str] = []

    @handles(Frame)
    def on_frame(self, frame: Frame) -> None:
        try:
            msg = decode(frame.data)
        except CodecError as exc:
            self.log.warning("dropped undecodable frame: {}", exc)
            self.bad.append(str(exc))
            return
        self.good.append(msg)


def test_receiver_keeps_running_after_bad_bytes(harness_factory: Any) -> None:
    h = harness_factory(ChildSpec("rx", Receiver))
    good = messages.Quote("BTCUSDT", Decimal("100.0"), Decimal("100.1"),
                          datetime(2026, 1, 5, tzinfo=UTC))
    raw = encode(good)
    garbage = [b"", b"\xc1", b"\x93\x01\x02", raw[:-3], raw.replace(b"Quote", b"Qu0te"),
               msgpack.packb({"v": 1, "t": "Quote", "f": {"symbol": "X"}}),
               msgpack.packb({"v": 1, "t": "Quote", "f": {"nope": 1}})]
    for g in garbage:
        h.system.tell("rx", Frame(g))
    h.system.tell("rx", Frame(raw))
    h.settle()
    rx = h.actor("rx")
    assert rx.good == [good]
    assert len(rx.bad) == len(garbage)
    assert all(text for text in rx.bad)
    cell = h.cell("rx")
    assert (cell.incarnation, cell.restarts, cell.failures) == (1, 0, 0)


def test_a_failed_encode_leaves_nothing_behind_for_the_next_one() -> None:
    """encode reuses one msgpack Packer per thread and nesting depth: a message
    that fails half-way (here a nested order with a non-finite price smuggled past
    validation) must not leave bytes in it that the next frame would carry."""
    from messages import OrderRequest, OrderType, Side, SubmitOrder

    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    good = SubmitOrder(OrderRequest("c-1", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("1"),
                                    t0, price=Decimal("100")))
    expected = encode(good)
    bad_order = OrderRequest("c-2", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("1"), t0,
                             price=Decimal("100"))
    object.__setattr__(bad_order, "price", Decimal("NaN"))
    for _ in range(3):
        with pytest.raises(CodecError):
            encode(SubmitOrder(bad_order))
        assert encode(good) == expected
        assert decode(expected) == good
