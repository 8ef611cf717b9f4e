"""The codec: registers and bits to values and back (bridge/codec.py).

Tables of hand-computed register images for every type and every word/byte order,
pymodbus's own converters as an oracle for the big-endian byte order, and
hypothesis round trips. The SGr commhandler bug regressions are at the end.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin

from bridge.core.codec import (
    bytes_to_words,
    decode,
    encode,
    set_bit,
    under_mask,
    words_to_bytes,
)
from bridge.core.errors import InvalidRequest, OutOfRange, RequestError
from bridge.core.points import Datapoint, DataType, Order, Table

B, L = Order.BIG, Order.LITTLE
ORDERS = [(B, B), (L, B), (B, L), (L, L)]  # (word_order, byte_order)
FIELD = "values.x"
NUMERIC = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32,
           DataType.INT64, DataType.UINT64, DataType.FLOAT32, DataType.FLOAT64]
INTEGER = [t for t in NUMERIC if t.is_integer]
# Property tests run once per type and order: fewer examples each keeps the file fast.
FEW = settings(max_examples=25, deadline=None)


def dp(type_: DataType, *, table: Table = Table.HOLDING, word_order: Order = B,
       byte_order: Order = B, scale: float = 1.0, offset: float = 0.0,
       bit: int | None = None, length: int | None = None,
       values: Mapping[int, str] | None = None,
       min: float | None = None, max: float | None = None) -> Datapoint:
    return Datapoint(name="x", table=table, address=0, type=type_, scale=scale, offset=offset,
                     word_order=word_order, byte_order=byte_order, bit=bit, length=length,
                     values=dict(values or {}), writable=table.is_writable, min=min, max=max)


def int_range(type_: DataType) -> tuple[int, int]:
    bits = type_.words * 16
    if type_.is_signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


# -- register images: (type, word_order, byte_order, words, value) -----------------------
# Computed by hand from the value's big-endian bytes: byte_order swaps the two bytes of
# each word, word_order reverses the list of words.

IMAGES: list[tuple[DataType, Order, Order, list[int], Any]] = [
    # int16 / uint16: one word, word order is irrelevant
    (DataType.INT16, B, B, [0x1234], 0x1234),
    (DataType.INT16, L, B, [0x1234], 0x1234),
    (DataType.INT16, B, L, [0x3412], 0x1234),
    (DataType.INT16, L, L, [0x3412], 0x1234),
    (DataType.INT16, B, B, [0xFFFE], -2),
    (DataType.INT16, B, L, [0xFEFF], -2),
    (DataType.INT16, B, B, [0x8000], -32768),
    (DataType.INT16, B, L, [0x0080], -32768),
    (DataType.INT16, B, B, [0x7FFF], 32767),
    (DataType.UINT16, B, B, [0xFFFE], 65534),
    (DataType.UINT16, L, B, [0xFFFE], 65534),
    (DataType.UINT16, B, L, [0xFEFF], 65534),
    (DataType.UINT16, L, L, [0xFEFF], 65534),
    (DataType.UINT16, B, B, [0x0000], 0),
    # int32 / uint32: 0x12345678 and 0xFFFFFFFE
    (DataType.INT32, B, B, [0x1234, 0x5678], 0x12345678),
    (DataType.INT32, L, B, [0x5678, 0x1234], 0x12345678),
    (DataType.INT32, B, L, [0x3412, 0x7856], 0x12345678),
    (DataType.INT32, L, L, [0x7856, 0x3412], 0x12345678),
    (DataType.INT32, B, B, [0xFFFF, 0xFFFE], -2),
    (DataType.INT32, L, B, [0xFFFE, 0xFFFF], -2),
    (DataType.INT32, B, L, [0xFFFF, 0xFEFF], -2),
    (DataType.INT32, L, L, [0xFEFF, 0xFFFF], -2),
    (DataType.INT32, B, B, [0x8000, 0x0000], -(2**31)),
    (DataType.UINT32, B, B, [0xFFFF, 0xFFFE], 0xFFFFFFFE),
    (DataType.UINT32, L, B, [0xFFFE, 0xFFFF], 0xFFFFFFFE),
    (DataType.UINT32, B, L, [0xFFFF, 0xFEFF], 0xFFFFFFFE),
    (DataType.UINT32, L, L, [0xFEFF, 0xFFFF], 0xFFFFFFFE),
    (DataType.UINT32, L, B, [0x5678, 0x1234], 0x12345678),
    # int64 / uint64: 0x0102030405060708
    (DataType.INT64, B, B, [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    (DataType.INT64, L, B, [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    (DataType.INT64, B, L, [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
    (DataType.INT64, L, L, [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    (DataType.INT64, B, B, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], -1),
    (DataType.INT64, B, B, [0x8000, 0x0000, 0x0000, 0x0000], -(2**63)),
    (DataType.INT64, L, B, [0x0000, 0x0000, 0x0000, 0x8000], -(2**63)),
    (DataType.INT64, L, L, [0x0000, 0x0000, 0x0000, 0x0080], -(2**63)),
    (DataType.UINT64, B, B, [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    (DataType.UINT64, L, B, [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    (DataType.UINT64, B, L, [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
    (DataType.UINT64, L, L, [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    (DataType.UINT64, B, B, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], 2**64 - 1),
    (DataType.UINT64, L, B, [0x0000, 0x0000, 0x0000, 0x8000], 2**63),
    # float32: 1.0 = 0x3F800000, -2.5 = 0xC0200000, 21.5 = 0x41AC0000
    (DataType.FLOAT32, B, B, [0x3F80, 0x0000], 1.0),
    (DataType.FLOAT32, L, B, [0x0000, 0x3F80], 1.0),
    (DataType.FLOAT32, B, L, [0x803F, 0x0000], 1.0),
    (DataType.FLOAT32, L, L, [0x0000, 0x803F], 1.0),
    (DataType.FLOAT32, B, B, [0xC020, 0x0000], -2.5),
    (DataType.FLOAT32, L, L, [0x0000, 0x20C0], -2.5),
    (DataType.FLOAT32, B, B, [0x41AC, 0x0000], 21.5),
    (DataType.FLOAT32, B, B, [0x0000, 0x0000], 0.0),
    # float64: 1.0 = 0x3FF0000000000000, -2.5 = 0xC004000000000000
    (DataType.FLOAT64, B, B, [0x3FF0, 0x0000, 0x0000, 0x0000], 1.0),
    (DataType.FLOAT64, L, B, [0x0000, 0x0000, 0x0000, 0x3FF0], 1.0),
    (DataType.FLOAT64, B, L, [0xF03F, 0x0000, 0x0000, 0x0000], 1.0),
    (DataType.FLOAT64, L, L, [0x0000, 0x0000, 0x0000, 0xF03F], 1.0),
    (DataType.FLOAT64, B, B, [0xC004, 0x0000, 0x0000, 0x0000], -2.5),
    (DataType.FLOAT64, L, B, [0x0000, 0x0000, 0x0000, 0xC004], -2.5),
    # 0.1 = 0x3FB999999999999A: not symmetric, so a half-reversed word order would show
    (DataType.FLOAT64, B, B, [0x3FB9, 0x9999, 0x9999, 0x999A], 0.1),
    (DataType.FLOAT64, L, B, [0x999A, 0x9999, 0x9999, 0x3FB9], 0.1),
    (DataType.FLOAT64, B, L, [0xB93F, 0x9999, 0x9999, 0x9A99], 0.1),
    (DataType.FLOAT64, L, L, [0x9A99, 0x9999, 0x9999, 0xB93F], 0.1),
]


def _image_id(case: tuple[DataType, Order, Order, list[int], Any]) -> str:
    type_, word_order, byte_order, _, value = case
    return f"{type_}-w{word_order}-b{byte_order}-{value!r}"


@pytest.mark.parametrize("case", IMAGES, ids=_image_id)
def test_decode_register_image(case: tuple[DataType, Order, Order, list[int], Any]) -> None:
    type_, word_order, byte_order, words, value = case
    decoded = decode(dp(type_, word_order=word_order, byte_order=byte_order), words)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize("case", IMAGES, ids=_image_id)
def test_encode_register_image(case: tuple[DataType, Order, Order, list[int], Any]) -> None:
    type_, word_order, byte_order, words, value = case
    assert encode(dp(type_, word_order=word_order, byte_order=byte_order), value) == words


def test_every_numeric_type_and_order_is_in_the_image_table() -> None:
    covered = {(t, w, b) for t, w, b, _, _ in IMAGES}
    assert {(t, w, b) for t in NUMERIC for w, b in ORDERS} <= covered


# -- words <-> bytes ---------------------------------------------------------------------

@pytest.mark.parametrize(("word_order", "byte_order", "words"), [
    (B, B, [0x0102, 0x0304]),
    (L, B, [0x0304, 0x0102]),
    (B, L, [0x0201, 0x0403]),
    (L, L, [0x0403, 0x0201]),
])
def test_words_and_bytes(word_order: Order, byte_order: Order, words: list[int]) -> None:
    assert words_to_bytes(words, word_order, byte_order) == b"\x01\x02\x03\x04"
    assert bytes_to_words(b"\x01\x02\x03\x04", word_order, byte_order) == words


@given(words=st.lists(st.integers(0, 0xFFFF), max_size=8),
       word_order=st.sampled_from(Order), byte_order=st.sampled_from(Order))
def test_words_bytes_words_round_trip(words: list[int], word_order: Order,
                                      byte_order: Order) -> None:
    data = words_to_bytes(words, word_order, byte_order)
    assert len(data) == 2 * len(words)
    assert bytes_to_words(data, word_order, byte_order) == words


# -- pymodbus as an oracle (big byte order; pymodbus has no byte swap) ---------------------

PYMODBUS_TYPE = {
    DataType.INT16: ModbusClientMixin.DATATYPE.INT16,
    DataType.UINT16: ModbusClientMixin.DATATYPE.UINT16,
    DataType.INT32: ModbusClientMixin.DATATYPE.INT32,
    DataType.UINT32: ModbusClientMixin.DATATYPE.UINT32,
    DataType.INT64: ModbusClientMixin.DATATYPE.INT64,
    DataType.UINT64: ModbusClientMixin.DATATYPE.UINT64,
    DataType.FLOAT32: ModbusClientMixin.DATATYPE.FLOAT32,
    DataType.FLOAT64: ModbusClientMixin.DATATYPE.FLOAT64,
}


@pytest.mark.parametrize("word_order", [B, L])
@pytest.mark.parametrize("type_", NUMERIC)
@given(data=st.data())
@FEW
def test_decode_agrees_with_pymodbus(type_: DataType, word_order: Order,
                                     data: st.DataObject) -> None:
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=type_.words,
                               max_size=type_.words))
    theirs = ModbusClientMixin.convert_from_registers(
        words, data_type=PYMODBUS_TYPE[type_], word_order=word_order.value)
    ours = decode(dp(type_, word_order=word_order), words)
    assert isinstance(theirs, int | float)
    if type_.is_float and not math.isfinite(theirs):
        assert ours is None
    elif type_ is DataType.FLOAT32:
        # ours is the shortest decimal for the same float32 (0.1, not 0.10000000149011612)
        assert isinstance(ours, float)
        assert struct.pack(">f", ours) == struct.pack(">f", theirs)
        assert len(repr(ours)) <= len(repr(theirs))
    else:
        assert ours == theirs


@pytest.mark.parametrize("word_order", [B, L])
@pytest.mark.parametrize("type_", INTEGER)
@given(data=st.data())
@FEW
def test_encode_agrees_with_pymodbus(type_: DataType, word_order: Order,
                                     data: st.DataObject) -> None:
    low, high = int_range(type_)
    value = data.draw(st.integers(low, high))
    theirs = ModbusClientMixin.convert_to_registers(
        value, data_type=PYMODBUS_TYPE[type_], word_order=word_order.value)
    assert encode(dp(type_, word_order=word_order), value) == theirs


@pytest.mark.parametrize("word_order", [B, L])
@pytest.mark.parametrize(("type_", "width"), [(DataType.FLOAT32, 32), (DataType.FLOAT64, 64)])
@given(data=st.data())
@FEW
def test_float_encode_agrees_with_pymodbus(type_: DataType, width: Literal[32, 64],
                                           word_order: Order, data: st.DataObject) -> None:
    value = data.draw(st.floats(width=width, allow_nan=False, allow_infinity=False))
    theirs = ModbusClientMixin.convert_to_registers(
        value, data_type=PYMODBUS_TYPE[type_], word_order=word_order.value)
    assert encode(dp(type_, word_order=word_order), value) == theirs


def fit_text(text: str, size: int) -> str:
    """`text` cut to at most `size` UTF-8 bytes, without the padding the codec trims."""
    while len(text.encode()) > size:
        text = text[:-1]
    return text.rstrip("\x00 ")


@given(text=st.text(max_size=8).map(lambda s: fit_text(s, 8)))
def test_string_agrees_with_pymodbus(text: str) -> None:
    point = dp(DataType.STRING, length=4)
    words = encode(point, text)
    assert len(words) == 4
    padded = ModbusClientMixin.convert_to_registers(
        text, data_type=ModbusClientMixin.DATATYPE.STRING)
    assert words[:len(padded)] == padded
    assert all(w == 0 for w in words[len(padded):])
    assert decode(point, words) == text
    assert ModbusClientMixin.convert_from_registers(
        words, data_type=ModbusClientMixin.DATATYPE.STRING) == text


# -- strings -----------------------------------------------------------------------------

@pytest.mark.parametrize(("byte_order", "words", "text"), [
    (B, [0x4142, 0x4344], "ABCD"),
    (L, [0x4241, 0x4443], "ABCD"),
    (B, [0x4142, 0x4300], "ABC"),
    (L, [0x4241, 0x0043], "ABC"),
    (B, [0x4100, 0x0000], "A"),
    (B, [0x0000, 0x0000], ""),
    (B, [0xC3A4, 0x0000], "ä"),
])
def test_string_image(byte_order: Order, words: list[int], text: str) -> None:
    point = dp(DataType.STRING, length=2, byte_order=byte_order)
    assert decode(point, words) == text
    assert encode(point, text) == words


def test_string_ignores_word_order() -> None:
    point = dp(DataType.STRING, length=2, word_order=L)
    assert decode(point, [0x4142, 0x4344]) == "ABCD"
    assert encode(point, "ABCD") == [0x4142, 0x4344]


@pytest.mark.parametrize(("words", "text"), [
    ([0x4142, 0x2020], "AB"),         # space padding
    ([0x4120, 0x0000], "A"),          # space then NUL padding
    ([0x4100, 0x2000], "A"),          # NUL then space padding
    ([0x2041, 0x2042], " A B"),       # leading and inner spaces kept
    ([0x4100, 0x4200], "A\x00B"),     # an inner NUL is kept
    ([0x2020, 0x2020], ""),
])
def test_string_trim(words: list[int], text: str) -> None:
    assert decode(dp(DataType.STRING, length=2), words) == text


def test_string_invalid_utf8_decodes_with_replacement() -> None:
    assert decode(dp(DataType.STRING, length=1), [0xFF41]) == "\ufffdA"


@pytest.mark.parametrize(("text", "fits"), [
    ("abcd", True), ("abcde", False), ("ää", True), ("ää€", False), ("€€", False), ("", True),
])
def test_string_length(text: str, fits: bool) -> None:
    point = dp(DataType.STRING, length=2)
    if fits:
        assert len(encode(point, text)) == 2
    else:
        with pytest.raises(OutOfRange) as exc:
            encode(point, text)
        assert exc.value.field == FIELD
        assert "do not fit 2 registers" in exc.value.message


@pytest.mark.parametrize("length", [1, 3, 125])
@pytest.mark.parametrize("byte_order", [B, L])
@given(data=st.data())
@FEW
def test_string_round_trip(length: int, byte_order: Order, data: st.DataObject) -> None:
    text = fit_text(data.draw(st.text(max_size=2 * length)), 2 * length)
    point = dp(DataType.STRING, length=length, byte_order=byte_order)
    words = encode(point, text)
    assert len(words) == length
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(point, words) == text


# -- bools -------------------------------------------------------------------------------

@pytest.mark.parametrize("table", [Table.COIL, Table.DISCRETE])
@pytest.mark.parametrize(("raw", "value"), [([True], True), ([False], False),
                                            ([1], True), ([0], False)])
def test_decode_bit_table(table: Table, raw: list[bool], value: bool) -> None:
    decoded = decode(dp(DataType.BOOL, table=table), raw)
    assert decoded is value


@pytest.mark.parametrize(("value", "bit"), [
    (True, True), (False, False), (1, True), (0, False),
    ("true", True), ("false", False), ("ON", True), ("off", False), (" On ", True),
    ("yes", True), ("no", False), ("1", True), ("0", False),
])
def test_encode_coil(value: object, bit: bool) -> None:
    encoded = encode(dp(DataType.BOOL, table=Table.COIL), value)
    assert encoded == [bit]
    assert type(encoded[0]) is bool


@pytest.mark.parametrize(("bit", "word", "value"), [
    (0, 0x0001, True), (0, 0xFFFE, False), (3, 0x0008, True), (3, 0x0007, False),
    (3, 0xFFF7, False), (15, 0x8000, True), (15, 0x7FFF, False), (8, 0x0100, True),
])
def test_decode_bit_of_register(bit: int, word: int, value: bool) -> None:
    assert decode(dp(DataType.BOOL, bit=bit), [word]) is value
    assert decode(dp(DataType.BOOL, table=Table.INPUT, bit=bit), [word]) is value


@pytest.mark.parametrize(("bit", "value", "words"), [
    (0, True, [0x0001]), (3, True, [0x0008]), (15, True, [0x8000]),
    (3, False, [0x0000]), (15, "off", [0x0000]), (7, "ON", [0x0080]),
])
def test_encode_bit_of_register(bit: int, value: object, words: list[int]) -> None:
    assert encode(dp(DataType.BOOL, bit=bit), value) == words


@pytest.mark.parametrize(("word", "value"), [(0, False), (1, True), (2, True), (0xFFFF, True)])
def test_bool_register_without_bit(word: int, value: bool) -> None:
    assert decode(dp(DataType.BOOL), [word]) is value


@pytest.mark.parametrize(("value", "words"), [(True, [1]), (False, [0]), ("on", [1])])
def test_encode_bool_register_without_bit(value: object, words: list[int]) -> None:
    assert encode(dp(DataType.BOOL), value) == words


@pytest.mark.parametrize("point", [dp(DataType.BOOL, table=Table.COIL),
                                   dp(DataType.BOOL, bit=2), dp(DataType.BOOL)],
                         ids=["coil", "bit", "register"])
@pytest.mark.parametrize("value", [2, -1, 0.5, 1.0, "maybe", "", None, [True], 10**400])
def test_encode_bool_rejects(point: Datapoint, value: object) -> None:
    with pytest.raises(InvalidRequest) as exc:
        encode(point, value)
    assert exc.value.field == FIELD
    assert exc.value.message.startswith("expected true or false")
    assert len(exc.value.message) < 80


# -- set_bit -----------------------------------------------------------------------------

@pytest.mark.parametrize(("register", "bit", "on", "result"), [
    (0x0000, 0, True, 0x0001),
    (0x0000, 15, True, 0x8000),
    (0xFFFF, 0, False, 0xFFFE),
    (0xFFFF, 15, False, 0x7FFF),
    (0x0008, 3, True, 0x0008),
    (0x0000, 3, False, 0x0000),
    (0x1234, 4, False, 0x1224),
    (0x1234, 0, True, 0x1235),
    (0x1234, 2, True, 0x1234),
])
def test_set_bit(register: int, bit: int, on: bool, result: int) -> None:
    assert set_bit(register, bit, on) == result


@given(register=st.integers(0, 0xFFFF), bit=st.integers(0, 15), on=st.booleans())
def test_set_bit_changes_only_that_bit(register: int, bit: int, on: bool) -> None:
    result = set_bit(register, bit, on)
    assert 0 <= result <= 0xFFFF
    assert bool(result >> bit & 1) is on
    assert result & ~(1 << bit) == register & ~(1 << bit)
    assert decode(dp(DataType.BOOL, bit=bit), [result]) is on


# -- scale and offset --------------------------------------------------------------------

@pytest.mark.parametrize(("point", "words", "value"), [
    (dp(DataType.INT16, scale=0.1), [215], 21.5),
    (dp(DataType.INT16, scale=0.1), [0xFFFF], -0.1),
    (dp(DataType.INT16, scale=0.1), [0xF79A], -215.0),
    (dp(DataType.UINT16, scale=0.1, offset=-40), [1000], 60.0),
    (dp(DataType.UINT16, scale=0.01), [2345], 23.45),
    (dp(DataType.UINT16, scale=2, offset=1), [5], 11),
    (dp(DataType.UINT16, scale=1, offset=-40), [100], 60),
    (dp(DataType.INT32, scale=0.001), [0x0001, 0xE240], 123.456),
    (dp(DataType.UINT32, scale=0.1, word_order=L), [0x0000, 0x0002], 13107.2),
    (dp(DataType.FLOAT32, scale=2), [0x41AC, 0x0000], 43.0),
    (dp(DataType.FLOAT32, offset=-1.5), [0x3F80, 0x0000], -0.5),
], ids=lambda x: repr(x) if not isinstance(x, Datapoint) else f"{x.type}*{x.scale}+{x.offset}")
def test_decode_scaled(point: Datapoint, words: list[int], value: float) -> None:
    decoded = decode(point, words)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(("point", "value", "words"), [
    (dp(DataType.INT16, scale=0.1), 21.5, [215]),
    (dp(DataType.INT16, scale=0.1), 21.45, [215]),       # half up
    (dp(DataType.INT16, scale=0.1), 21.44, [214]),
    (dp(DataType.INT16, scale=0.1), 21.46, [215]),
    (dp(DataType.INT16, scale=0.1), 0.15, [2]),          # 1.4999999999999998 in binary
    (dp(DataType.INT16, scale=0.1), -21.45, [0xFF2A]),   # -214.5 rounds up to -214
    (dp(DataType.INT16, scale=0.1), -0.1, [0xFFFF]),
    (dp(DataType.INT16, scale=0.1), 21, [210]),
    (dp(DataType.INT16, scale=0.1), "21.5", [215]),      # plain-text payloads
    (dp(DataType.UINT16, scale=0.01), 1.005, [101]),
    (dp(DataType.UINT16, scale=0.1, offset=-40), 60, [1000]),
    (dp(DataType.UINT16, scale=0.1, offset=-40), 21.45, [615]),
    (dp(DataType.UINT16, scale=2, offset=1), 11, [5]),
    (dp(DataType.UINT16, scale=2, offset=1), 12, [6]),   # 5.5 -> 6
    (dp(DataType.UINT16, scale=1, offset=-40), 60, [100]),
    (dp(DataType.INT16), 21.5, [22]),                    # unscaled float to an integer
    (dp(DataType.INT16), 21.4999, [21]),
    (dp(DataType.INT32, scale=0.001), 123.456, [0x0001, 0xE240]),
    (dp(DataType.UINT32, scale=0.1, word_order=L), 13107.2, [0x0000, 0x0002]),
    (dp(DataType.UINT32, scale=0.1), 1234567.45, [0x00BC, 0x614B]),  # 12345675
    (dp(DataType.FLOAT32, scale=2), 43, [0x41AC, 0x0000]),
    (dp(DataType.FLOAT32, offset=-1.5), -0.5, [0x3F80, 0x0000]),
], ids=lambda x: repr(x) if not isinstance(x, Datapoint) else f"{x.type}*{x.scale}+{x.offset}")
def test_encode_scaled(point: Datapoint, value: object, words: list[int]) -> None:
    assert encode(point, value) == words


@pytest.mark.parametrize("type_", [DataType.INT16, DataType.UINT16, DataType.INT32,
                                   DataType.UINT32])
@pytest.mark.parametrize(("scale", "offset"), [(0.1, 0.0), (0.01, 0.0), (0.1, -40.0),
                                               (0.01, 273.15), (0.5, 0.0), (2.0, 1.0),
                                               (10.0, 0.0), (0.001, 0.0)])
@given(data=st.data())
@FEW
def test_scaled_integer_round_trip(type_: DataType, scale: float, offset: float,
                                   data: st.DataObject) -> None:
    """Every register value survives decode -> encode through a scale and offset."""
    low, high = int_range(type_)
    raw = data.draw(st.integers(low, high))
    point = dp(type_, scale=scale, offset=offset)
    words = encode(dp(type_), raw)
    value = decode(point, words)
    assert isinstance(value, int | float)
    assert math.isclose(value, raw * scale + offset, rel_tol=1e-9, abs_tol=1e-9)
    assert encode(point, value) == words


# -- value maps --------------------------------------------------------------------------

MODES = {0: "off", 1: "on", 2: "auto"}


@pytest.mark.parametrize(("words", "value"), [
    ([0], "off"), ([1], "on"), ([2], "auto"), ([7], 7), ([0xFFFF], 65535),
])
def test_value_map_decode(words: list[int], value: object) -> None:
    assert decode(dp(DataType.UINT16, values=MODES), words) == value


@pytest.mark.parametrize(("value", "words"), [
    ("off", [0]), ("on", [1]), ("auto", [2]), (0, [0]), (1, [1]), (2, [2]),
])
def test_value_map_encode(value: object, words: list[int]) -> None:
    assert encode(dp(DataType.UINT16, values=MODES), value) == words


@pytest.mark.parametrize("value", ["bogus", "OFF", 3, 7, -1, True, False, 1.0, None, 10**400])
def test_value_map_rejects_unknown(value: object) -> None:
    with pytest.raises(OutOfRange) as exc:
        encode(dp(DataType.UINT16, values=MODES), value)
    assert exc.value.field == FIELD
    assert "'off', 'on', 'auto'" in exc.value.message
    assert len(exc.value.message) < 100


def test_value_map_signed_and_word_order() -> None:
    point = dp(DataType.INT32, word_order=L, values={-1: "fault", 65536: "big"})
    assert decode(point, [0xFFFF, 0xFFFF]) == "fault"
    assert decode(point, [0x0000, 0x0001]) == "big"
    assert decode(point, [0x0001, 0x0000]) == 1
    assert encode(point, "fault") == [0xFFFF, 0xFFFF]
    assert encode(point, "big") == [0x0000, 0x0001]
    assert encode(point, 65536) == [0x0000, 0x0001]



def masked(type_: DataType, mask: int, values: Mapping[int, str], **kw: Any) -> Datapoint:
    return dataclasses.replace(dp(type_, values=values, **kw), mask=mask)


@pytest.mark.parametrize(("point", "current", "label", "written"), [
    # the high byte is the field: the low byte (another field) stays
    (masked(DataType.UINT16, 0xFF00, {0x0100: "one", 0x0200: "two", 0: "none"}),
     [0x0137], "two", [0x0237]),
    (masked(DataType.UINT16, 0xFF00, {0x0100: "one", 0x0200: "two", 0: "none"}),
     [0xFFFF], "none", [0x00FF]),
    # bits 4-5 only
    (masked(DataType.UINT16, 0x0030, {0x10: "a", 0x20: "b"}), [0xABCF], "b", [0xABEF]),
    # byte order swapped inside the word: the mask is on the value, as on reads
    (masked(DataType.UINT16, 0xFF00, {0x0100: "one"}, byte_order=L), [0x3702], "one",
     [0x3701]),
    # uint8 lives in the low byte: the high byte is kept, not written as 0
    (masked(DataType.UINT8, 0x0F, {0x03: "three"}), [0x12F0], "three", [0x12F3]),
    # 32 bits, words swapped: the mask spans both words
    (masked(DataType.UINT32, 0x00FF_0000, {0x0001_0000: "on"}, word_order=L),
     [0xBEEF, 0x12FF], "on", [0xBEEF, 0x1201]),
])
def test_masked_write_keeps_the_bits_outside_the_mask(point: Datapoint, current: list[int],
                                                      label: str, written: list[int]) -> None:
    merged = under_mask(point, current, encode(point, label))
    assert merged == written
    assert decode(point, merged) == label  # and it reads back as written


# -- limits ------------------------------------------------------------------------------

@pytest.mark.parametrize(("point", "value", "words"), [
    (dp(DataType.UINT16, min=5, max=30), 5, [5]),
    (dp(DataType.UINT16, min=5, max=30), 30, [30]),
    (dp(DataType.UINT16, min=5, max=30, scale=0.1), 30, [300]),
    (dp(DataType.INT16, min=-10), -10, [0xFFF6]),
    (dp(DataType.FLOAT32, max=1.0), 1.0, [0x3F80, 0x0000]),
])
def test_limits_accept(point: Datapoint, value: object, words: list[int]) -> None:
    assert encode(point, value) == words


@pytest.mark.parametrize(("point", "value", "message"), [
    (dp(DataType.UINT16, min=5, max=30), 4, "4 is below the minimum 5"),
    (dp(DataType.UINT16, min=5, max=30), 4.99, "4.99 is below the minimum 5"),
    (dp(DataType.UINT16, min=5, max=30), 31, "31 is above the maximum 30"),
    (dp(DataType.UINT16, min=5, max=30, scale=0.1), 30.1, "30.1 is above the maximum 30"),
    (dp(DataType.UINT16, min=5, max=30), "31", "31 is above the maximum 30"),
    (dp(DataType.INT16, min=-10), -11, "-11 is below the minimum -10"),
    (dp(DataType.FLOAT32, max=1.0), 1.5, "1.5 is above the maximum 1"),
    (dp(DataType.FLOAT64, min=0.0), -1e-9, "-1e-09 is below the minimum 0"),
])
def test_limits_reject(point: Datapoint, value: object, message: str) -> None:
    with pytest.raises(OutOfRange) as exc:
        encode(point, value)
    assert exc.value.field == FIELD
    assert exc.value.message == message
    assert exc.value.to_wire() == {"code": "out_of_range", "message": message, "field": FIELD}


# -- wrong types -------------------------------------------------------------------------

@pytest.mark.parametrize("type_", NUMERIC)
@pytest.mark.parametrize(("value", "message"), [
    (True, "expected a number, got bool"),
    (False, "expected a number, got bool"),
    ("abc", "expected a number, got 'abc'"),
    ("", "expected a number, got ''"),
    ("21,5", "expected a number, got '21,5'"),
    (None, "expected a number, got NoneType"),
    ([1], "expected a number, got list"),
    ({"v": 1}, "expected a number, got dict"),
    (math.nan, "expected a finite number, got nan"),
    (math.inf, "expected a finite number, got inf"),
    (-math.inf, "expected a finite number, got -inf"),
    ("nan", "expected a number, got 'nan'"),
    ("-inf", "expected a number, got '-inf'"),
    # Only plain ASCII decimal text: int()/float() would take these as 10, 12, 3, 16.
    ("1_0", "expected a number, got '1_0'"),
    ("\u0661\u0662", "expected a number, got '\u0661\u0662'"),
    ("\uff13", "expected a number, got '\uff13'"),
    ("0x10", "expected a number, got '0x10'"),
    ("1\n\n2", "expected a number, got '1\\n\\n2'"),
])
def test_number_rejects_wrong_type(type_: DataType, value: object, message: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        encode(dp(type_), value)
    assert exc.value.field == FIELD
    assert exc.value.message == message
    assert exc.value.code == "invalid_request"


@pytest.mark.parametrize(("value", "kind"), [
    (5, "int"), (1.5, "float"), (True, "bool"), (None, "NoneType"), (["a"], "list"),
])
def test_string_rejects_non_string(value: object, kind: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        encode(dp(DataType.STRING, length=4), value)
    assert exc.value.field == FIELD
    assert exc.value.message == f"expected a string, got {kind}"


# -- out of range ------------------------------------------------------------------------

@pytest.mark.parametrize("type_", INTEGER)
def test_integer_limits_of_the_type(type_: DataType) -> None:
    low, high = int_range(type_)
    point = dp(type_)
    assert decode(point, encode(point, low)) == low
    assert decode(point, encode(point, high)) == high
    for value in (low - 1, high + 1):
        with pytest.raises(OutOfRange) as exc:
            encode(point, value)
        assert exc.value.field == FIELD
        assert f"is outside {type_} ({low}..{high})" in exc.value.message


@pytest.mark.parametrize(("point", "value"), [
    (dp(DataType.UINT16, scale=0.1), 6553.6),            # 65536 after scaling
    (dp(DataType.UINT16, scale=0.1), -0.1),
    (dp(DataType.INT16, scale=0.001), 33.0),
    (dp(DataType.UINT16, offset=100), 99),
    (dp(DataType.INT16), 32767.5),                       # rounds to 32768
    (dp(DataType.INT16), 1e300),
    (dp(DataType.UINT64), 2.0**64),
    (dp(DataType.INT16, scale=1e-300), 1e300),           # inf after scaling
    (dp(DataType.FLOAT32), 1e39),
    (dp(DataType.FLOAT32), -3.5e38),
    (dp(DataType.FLOAT32, scale=1e-300), 1.0),
    (dp(DataType.FLOAT64, scale=1e-300), 1e300),
], ids=lambda x: repr(x) if not isinstance(x, Datapoint) else f"{x.type}*{x.scale}+{x.offset}")
def test_out_of_range_after_scaling(point: Datapoint, value: float) -> None:
    with pytest.raises(OutOfRange) as exc:
        encode(point, value)
    assert exc.value.field == FIELD
    assert str(point.type) in exc.value.message


def test_scaled_edge_of_range_fits() -> None:
    assert encode(dp(DataType.UINT16, scale=0.1), 6553.5) == [0xFFFF]
    assert encode(dp(DataType.INT16), 32767.4) == [0x7FFF]
    assert encode(dp(DataType.INT16), -32768.5) == [0x8000]  # half up: -32768
    assert encode(dp(DataType.FLOAT32), 3.4e38) == list(struct.unpack(">2H",
                                                                     struct.pack(">f", 3.4e38)))
    assert encode(dp(DataType.FLOAT64), 1e300) == list(struct.unpack(">4H",
                                                                    struct.pack(">d", 1e300)))


@pytest.mark.parametrize("type_", NUMERIC)
@pytest.mark.parametrize("huge", [10**400, -(10**400), 10**5000],
                         ids=["1e400", "-1e400", "1e5000"])
def test_huge_int_is_out_of_range_with_a_short_message(type_: DataType, huge: int) -> None:
    with pytest.raises(OutOfRange) as exc:
        encode(dp(type_), huge)
    assert exc.value.field == FIELD
    assert exc.value.message == "the number is too large"


@pytest.mark.parametrize("type_", INTEGER)
def test_large_int_message_does_not_print_the_number(type_: DataType) -> None:
    with pytest.raises(OutOfRange) as exc:
        encode(dp(type_), 10**300)
    assert exc.value.field == FIELD
    assert exc.value.message.startswith("a number that large is outside")
    assert len(exc.value.message) < 120


def test_huge_int_for_a_string_is_invalid_and_short() -> None:
    with pytest.raises(InvalidRequest) as exc:
        encode(dp(DataType.STRING, length=2), 10**400)
    assert exc.value.field == FIELD
    assert exc.value.message == "expected a string, got int"


def test_long_text_message_is_truncated() -> None:
    with pytest.raises(InvalidRequest) as exc:
        encode(dp(DataType.INT16), "x" * 5000)
    assert exc.value.field == FIELD
    assert exc.value.message == "expected a number, got " + repr("x" * 5000)[:37] + "..."


# -- floats ------------------------------------------------------------------------------

@pytest.mark.parametrize(("type_", "word_order", "words"), [
    (DataType.FLOAT32, B, [0x7FC0, 0x0000]),                     # quiet NaN
    (DataType.FLOAT32, B, [0xFFC0, 0x0001]),                     # negative NaN, payload
    (DataType.FLOAT32, L, [0x0000, 0x7FC0]),
    (DataType.FLOAT32, B, [0x7F80, 0x0000]),                     # +inf
    (DataType.FLOAT32, B, [0xFF80, 0x0000]),                     # -inf
    (DataType.FLOAT64, B, [0x7FF8, 0x0000, 0x0000, 0x0000]),
    (DataType.FLOAT64, L, [0x0000, 0x0000, 0x0000, 0x7FF8]),
    (DataType.FLOAT64, B, [0x7FF0, 0x0000, 0x0000, 0x0000]),     # +inf
    (DataType.FLOAT64, B, [0xFFF0, 0x0000, 0x0000, 0x0000]),     # -inf
])
def test_non_finite_float_decodes_to_none(type_: DataType, word_order: Order,
                                          words: list[int]) -> None:
    assert decode(dp(type_, word_order=word_order), words) is None
    assert decode(dp(type_, word_order=word_order, scale=0.1, offset=5), words) is None


@pytest.mark.parametrize(("words", "value"), [
    ([0x3DCC, 0xCCCD], 0.1),              # 0.10000000149011612 as a double
    ([0x40A0, 0x0001], 5.0000005),        # 5.000000476837158
    ([0x4B18, 0x9681], 10000001.0),       # 8 digits: 7 would give 10000000.0
    ([0x4B7F, 0xFFFF], 16777215.0),
    ([0x7F7F, 0xFFFF], 3.4028235e38),     # largest float32
    ([0x8000, 0x0000], -0.0),
])
def test_float32_decodes_the_shortest_decimal_of_the_same_float32(words: list[int],
                                                                  value: float) -> None:
    decoded = decode(dp(DataType.FLOAT32), words)
    assert decoded == value
    assert repr(decoded) == repr(value)
    assert encode(dp(DataType.FLOAT32), decoded) == words


# -- round-trip properties ---------------------------------------------------------------

@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@pytest.mark.parametrize("type_", NUMERIC)
@given(data=st.data())
@FEW
def test_encode_decode_words_round_trip(type_: DataType, word_order: Order,
                                        byte_order: Order, data: st.DataObject) -> None:
    """encode(decode(words)) == words for every register image a device can send."""
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=type_.words,
                               max_size=type_.words))
    point = dp(type_, word_order=word_order, byte_order=byte_order)
    value = decode(point, words)
    if type_.is_float:
        assume(value is not None)  # NaN / infinity: no JSON value to write back
    assert value is not None
    assert encode(point, value) == words


@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@pytest.mark.parametrize("type_", INTEGER)
@given(data=st.data())
@FEW
def test_decode_encode_integer_round_trip(type_: DataType, word_order: Order,
                                          byte_order: Order, data: st.DataObject) -> None:
    low, high = int_range(type_)
    value = data.draw(st.integers(low, high))
    point = dp(type_, word_order=word_order, byte_order=byte_order)
    words = encode(point, value)
    assert len(words) == type_.words
    assert all(0 <= w <= 0xFFFF for w in words)
    decoded = decode(point, words)
    assert decoded == value
    assert type(decoded) is int


@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@pytest.mark.parametrize(("type_", "width"), [(DataType.FLOAT32, 32), (DataType.FLOAT64, 64)])
@given(data=st.data())
@FEW
def test_decode_encode_float_round_trip(type_: DataType, width: Literal[32, 64], word_order: Order,
                                        byte_order: Order, data: st.DataObject) -> None:
    value = data.draw(st.floats(width=width, allow_nan=False, allow_infinity=False))
    point = dp(type_, word_order=word_order, byte_order=byte_order)
    decoded = decode(point, encode(point, value))
    assert isinstance(decoded, float)
    fmt = ">f" if type_ is DataType.FLOAT32 else ">d"
    # float32: the same float32 (as its shortest decimal); float64: the very same value
    assert struct.pack(fmt, decoded) == struct.pack(fmt, value)
    if type_ is DataType.FLOAT64:
        assert repr(decoded) == repr(value)


# -- decode input checks -----------------------------------------------------------------

@pytest.mark.parametrize(("point", "raw"), [
    (dp(DataType.INT32), [1]),
    (dp(DataType.INT16), [1, 2]),
    (dp(DataType.FLOAT64), [0, 0]),
    (dp(DataType.STRING, length=3), [0, 0]),
    (dp(DataType.BOOL, table=Table.COIL), []),
])
def test_decode_wrong_length_raises(point: Datapoint, raw: Sequence[int]) -> None:
    with pytest.raises(ValueError, match=f"expected {point.count} words, got {len(raw)}"):
        decode(point, raw)


def test_request_errors_are_request_errors() -> None:
    with pytest.raises(RequestError):
        encode(dp(DataType.INT16), "abc")
    with pytest.raises(RequestError):
        encode(dp(DataType.INT16), 10**6)


# -- SGr commhandler codec bug regressions -----------------------------------------------
# Each of these broke in the SGr commhandler's codec; one test per bug, named after it.

def test_sgr_value_map_raw_zero_is_not_treated_as_missing() -> None:
    point = dp(DataType.UINT16, values={0: "off", 1: "on"})
    assert decode(point, [0]) == "off"
    assert encode(point, "off") == [0]
    assert encode(point, 0) == [0]


def test_sgr_scaled_write_rounds_half_up_instead_of_truncating_or_raising() -> None:
    point = dp(DataType.INT16, scale=0.1)
    assert encode(point, 21.5) == [215]   # 21.5/0.1 truncated would be 214
    assert encode(point, 21.45) == [215]  # 214.49999999999997 in binary: still half up
    assert encode(point, 21.44) == [214]
    assert encode(point, 21.449) == [214]


def test_sgr_int16_is_signed() -> None:
    assert decode(dp(DataType.INT16), [0xFFFF]) == -1
    assert decode(dp(DataType.INT16), [0x8000]) == -32768
    assert decode(dp(DataType.UINT16), [0xFFFF]) == 65535
    assert encode(dp(DataType.INT16), -1) == [0xFFFF]


def test_sgr_64bit_little_word_order_reverses_all_four_words() -> None:
    value = 0x0001_0002_0003_0004
    big = encode(dp(DataType.UINT64), value)
    little = encode(dp(DataType.UINT64, word_order=L), value)
    assert big == [1, 2, 3, 4]
    assert little == [4, 3, 2, 1]            # not pairwise [2, 1, 4, 3] or [3, 4, 1, 2]
    assert decode(dp(DataType.UINT64, word_order=L), [4, 3, 2, 1]) == value
    assert decode(dp(DataType.INT64, word_order=L), [4, 3, 2, 1]) == value


def test_sgr_string_trim_removes_only_trailing_nul_and_spaces() -> None:
    point = dp(DataType.STRING, length=4)
    assert decode(point, [0x2020, 0x4120, 0x4220, 0x0000]) == "  A B"
    assert decode(point, [0x4120, 0x2000, 0x2000, 0x2020]) == "A"


def test_sgr_bit_numbering_zero_is_least_significant() -> None:
    assert decode(dp(DataType.BOOL, bit=3), [0x0008]) is True
    assert decode(dp(DataType.BOOL, bit=0), [0x0008]) is False
    assert decode(dp(DataType.BOOL, bit=12), [0x0008]) is False  # not MSB-first numbering
    assert encode(dp(DataType.BOOL, bit=3), True) == [0x0008]


def test_sgr_float32_word_swap() -> None:
    assert encode(dp(DataType.FLOAT32, word_order=L), 1.0) == [0x0000, 0x3F80]
    assert decode(dp(DataType.FLOAT32, word_order=L), [0x0000, 0x3F80]) == 1.0
    assert decode(dp(DataType.FLOAT32), [0x0000, 0x3F80]) != 1.0
