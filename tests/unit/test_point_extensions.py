"""Datapoint features that SGr EIDs need (and users want anyway), as tables:
write-only points, bools in a whole register with their own true/false values,
masked value maps, int8 in the low byte, base1000 pairs, the `pairs` word order
(SGr ChangeWordOrder on 64-bit values), constants read once, flash writes."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from bridge.core import parse
from bridge.core.codec import decode, encode
from bridge.core.errors import InvalidRequest, OutOfRange
from bridge.core.points import Datapoint, DataType, Order, Table

B, L, P = Order.BIG, Order.LITTLE, Order.PAIRS


def dp(type_: DataType, **kw: Any) -> Datapoint:
    kw.setdefault("table", Table.HOLDING)
    kw.setdefault("writable", kw["table"].is_writable and type_ is not DataType.BASE1000)
    return Datapoint(name="x", address=0, type=type_, **kw)


# -- int8 / uint8: the low byte of one register --------------------------------------

@pytest.mark.parametrize(("type_", "byte_order", "words", "value"), [
    (DataType.INT8, B, [0x00FF], -1),
    (DataType.INT8, B, [0xAB7F], 127),       # the high byte is not part of the value
    (DataType.INT8, B, [0x0080], -128),
    (DataType.UINT8, B, [0x12FF], 255),
    (DataType.UINT8, B, [0x0000], 0),
    (DataType.INT8, L, [0xFE00], -2),        # byte order swaps first: low byte is 0xFE
    (DataType.UINT8, L, [0x2A11], 0x2A),
])
def test_int8_decodes_the_low_byte(type_: DataType, byte_order: Order, words: list[int],
                                   value: int) -> None:
    assert decode(dp(type_, byte_order=byte_order), words) == value


@pytest.mark.parametrize(("type_", "value", "words"), [
    (DataType.INT8, -1, [0x00FF]),           # high byte written as 0, not sign-extended
    (DataType.INT8, 127, [0x007F]),
    (DataType.INT8, -128, [0x0080]),
    (DataType.UINT8, 255, [0x00FF]),
])
def test_int8_encodes_into_the_low_byte(type_: DataType, value: int, words: list[int]) -> None:
    assert encode(dp(type_), value) == words


@pytest.mark.parametrize(("type_", "value"), [
    (DataType.INT8, 128), (DataType.INT8, -129), (DataType.UINT8, 256), (DataType.UINT8, -1)])
def test_int8_range(type_: DataType, value: int) -> None:
    with pytest.raises(OutOfRange):
        encode(dp(type_), value)


def test_scaled_int8() -> None:
    point = dp(DataType.INT8, scale=0.5)
    assert decode(point, [0x00FB]) == -2.5
    assert encode(point, -2.5) == [0x00FB]


# -- bool in a whole register with true/false values -----------------------------------

@pytest.mark.parametrize(("true_value", "false_value", "word", "value"), [
    (None, None, 0, False), (None, None, 1, True), (None, None, 7, True),
    (None, 2, 2, False), (None, 2, 0, True), (None, 2, 1, True),   # anything but false
    (0xFF, 0x55, 0x55, False), (0xFF, 0x55, 0xFF, True), (0xFF, 0x55, 3, True),
    (5, None, 0, False), (5, None, 5, True),
])
def test_bool_register_decode(true_value: int | None, false_value: int | None, word: int,
                              value: bool) -> None:
    point = dp(DataType.BOOL, true_value=true_value, false_value=false_value)
    assert decode(point, [word]) is value


@pytest.mark.parametrize(("true_value", "false_value", "value", "words"), [
    (None, None, True, [1]), (None, None, False, [0]),
    (0xFF, 0x55, True, [0xFF]), (0xFF, 0x55, False, [0x55]),
    (None, 2, False, [2]), (None, 2, True, [1]),
])
def test_bool_register_encode(true_value: int | None, false_value: int | None, value: bool,
                              words: list[int]) -> None:
    point = dp(DataType.BOOL, true_value=true_value, false_value=false_value)
    assert encode(point, value) == words


# -- value maps with a mask ----------------------------------------------------------------

@pytest.mark.parametrize(("mask", "word", "value"), [
    (0x000F, 0x1232, "b"),        # the mask clears the high bits before the lookup
    (0x000F, 0xFFF1, "a"),
    (0x000F, 0x0000, "zero"),     # ordinal 0 is a label like any other
    (0x000F, 0x0009, 9),          # unknown: the masked number, not an error
    (0xFF00, 0x0100, "high"),     # the mask is a number: 0xFF00 keeps the high byte as is
    (None, 0x1232, 0x1232),
])
def test_masked_value_map(mask: int | None, word: int, value: object) -> None:
    point = dp(DataType.UINT16, values={0: "zero", 1: "a", 2: "b", 0x100: "high"}, mask=mask)
    assert decode(point, [word]) == value


def test_masked_value_map_on_a_signed_type_masks_the_raw_bits() -> None:
    point = dp(DataType.INT16, values={1: "on"}, mask=0x0001)
    assert decode(point, [0xFFFF]) == "on"


def test_enum_zero_encodes_and_decodes() -> None:
    # The SGr handler treated ordinal 0 as "no value" (falsy) on both paths.
    point = dp(DataType.UINT16, values={0: "HP_NORMAL", 1: "HP_INTENSIFIED"})
    assert decode(point, [0]) == "HP_NORMAL"
    assert encode(point, "HP_NORMAL") == [0]
    assert encode(point, 0) == [0]


# -- base1000: two registers, 1000 x high + low ---------------------------------------

@pytest.mark.parametrize(("word_order", "byte_order", "words", "value"), [
    (B, B, [12, 345], 12345),          # H2L: thousands first
    (L, B, [345, 12], 12345),          # L2H: the low part first (Stiebel Eltron)
    (L, B, [999, 999], 999999),
    (B, L, [0x0C00, 0x5901], 12345),   # byte order applies inside each register
    (L, B, [0, 0], 0),
])
def test_base1000_decode(word_order: Order, byte_order: Order, words: list[int],
                         value: int) -> None:
    point = dp(DataType.BASE1000, table=Table.INPUT, word_order=word_order,
               byte_order=byte_order)
    assert decode(point, words) == value


def test_base1000_scaled() -> None:
    point = dp(DataType.BASE1000, table=Table.INPUT, word_order=L, scale=0.001)
    assert decode(point, [500, 7]) == 7.5


def test_base1000_is_read_only() -> None:
    with pytest.raises(ValueError, match="read-only"):
        dp(DataType.BASE1000, writable=True)


# -- word order "pairs": SGr ChangeWordOrder ------------------------------------------------
# Letters are the value's bytes, most significant first: AB CD EF GH.

@pytest.mark.parametrize(("type_", "word_order", "value", "words"), [
    (DataType.UINT32, P, 0x11223344, [0x3344, 0x1122]),                  # CD AB
    (DataType.UINT32, L, 0x11223344, [0x3344, 0x1122]),                  # same for 32 bits
    (DataType.UINT64, P, 0x1122334455667788, [0x3344, 0x1122, 0x7788, 0x5566]),  # CD AB GH EF
    (DataType.UINT64, L, 0x1122334455667788, [0x7788, 0x5566, 0x3344, 0x1122]),  # GH EF CD AB
    (DataType.UINT16, P, 0x1122, [0x1122]),
])
def test_pairs_word_order(type_: DataType, word_order: Order, value: int,
                          words: list[int]) -> None:
    point = dp(type_, word_order=word_order)
    assert encode(point, value) == words
    assert decode(point, words) == value


def test_change_word_order_float32() -> None:
    # The SGr handler decoded ChangeWordOrder float32 with the words as they came.
    (high, low) = struct.unpack(">HH", struct.pack(">f", 230.5))
    assert decode(dp(DataType.FLOAT32, word_order=P), [low, high]) == 230.5


def test_change_word_order_float64_swaps_pairs() -> None:
    a, b, c, d = struct.unpack(">4H", struct.pack(">d", 12345.678))
    assert decode(dp(DataType.FLOAT64, word_order=P), [b, a, d, c]) == 12345.678


def test_pairs_is_not_a_byte_order() -> None:
    with pytest.raises(ValueError, match="word order"):
        dp(DataType.UINT16, byte_order=P)


# -- direction: write-only, constants, persistent ---------------------------------------

@pytest.mark.parametrize(("kw", "message"), [
    ({"readable": False}, "must be writable"),
    ({"readable": False, "writable": True, "constant": True}, "constant must be readable"),
    ({"persistent": True}, "only for writable"),
    ({"true_value": 1, "bit": 3}, "whole register"),
    ({"true_value": 1, "false_value": 1}, "must differ"),
    ({"mask": 0xF}, "value maps"),
])
def test_extension_rules(kw: dict[str, Any], message: str) -> None:
    kw.setdefault("writable", False)
    with pytest.raises(ValueError, match=message):
        dp(DataType.BOOL if "true_value" in kw or "bit" in kw else DataType.UINT16, **kw)


POINTS = {
    "cmd": Datapoint(name="cmd", table=Table.HOLDING, address=0, type=DataType.UINT16,
                     writable=True, readable=False),
    "temp": Datapoint(name="temp", table=Table.INPUT, address=1, type=DataType.INT16),
    "serial": Datapoint(name="serial", table=Table.INPUT, address=2, type=DataType.UINT32,
                        constant=True),
}


def test_write_only_points_are_not_read_by_name_nor_in_all() -> None:
    assert parse.parse_get(b"", POINTS).names == ("temp", "serial")
    with pytest.raises(InvalidRequest, match="write-only"):
        parse.parse_get(b'["cmd"]', POINTS)
    assert parse.parse_set(b'{"cmd": 3}', POINTS).values == {"cmd": 3}


class FakeBus:
    """Answers every read with zeros and records (table, address, count)."""

    def __init__(self) -> None:
        self.reads: list[tuple[Table, int, int]] = []
        self.writes: list[tuple[Table, int, list[int]]] = []

    async def read(self, unit: int, table: Table, address: int, count: int,
                   **kw: Any) -> list[int]:
        self.reads.append((table, address, count))
        return [0] * count

    async def write(self, unit: int, table: Table, address: int, values: list[int],
                    **kw: Any) -> None:
        self.writes.append((table, address, list(values)))


async def test_polls_skip_write_only_points_and_read_constants_once() -> None:
    from bridge.device.unit import Device
    bus = FakeBus()
    device = Device("d", 1, bus, POINTS.values(), max_gap=0)  # type: ignore[arg-type]
    first = await device.read_points()
    assert set(first.values) == {"temp", "serial"}
    assert bus.reads == [(Table.INPUT, 1, 3)]
    bus.reads.clear()
    second = await device.read_points()
    assert set(second.values) == {"temp"}
    assert bus.reads == [(Table.INPUT, 1, 1)]
    # Asked by name, a constant is read again (a user may want to check it).
    assert set((await device.read_points(["serial"])).values) == {"serial"}


async def test_write_only_write_is_not_read_back() -> None:
    from bridge.device.unit import Device
    bus = FakeBus()
    device = Device("d", 1, bus, POINTS.values())  # type: ignore[arg-type]
    from bridge.core.parse import parse_set
    result = await device.write_points(parse_set(b'{"cmd": 7}', POINTS))
    assert bus.writes == [(Table.HOLDING, 0, [7])]
    assert bus.reads == []
    assert result.values == {}



# -- no_value: a device's "not available" marker -------------------------------------

@pytest.mark.parametrize(("point", "words", "value"), [
    (dp(DataType.INT16, scale=0.1, no_value=frozenset({-32768})), [0x8000], None),
    (dp(DataType.INT16, scale=0.1, no_value=frozenset({-32768})), [0x8001], -3276.7),
    (dp(DataType.UINT16, no_value=frozenset({0xFFFF})), [0xFFFF], None),
    (dp(DataType.INT32, word_order=L, no_value=frozenset({-1})), [0xFFFF, 0xFFFF], None),
    (dp(DataType.UINT16, values={0: "off", 1: "on"}, no_value=frozenset({0xFFFF})),
     [0xFFFF], None),  # before the value map: not the raw number
    (dp(DataType.BASE1000, table=Table.INPUT, no_value=frozenset({65535 * 1000 + 65535})),
     [0xFFFF, 0xFFFF], None),
])
def test_no_value_decodes_to_none(point: Datapoint, words: list[int], value: object) -> None:
    assert decode(point, words) == value


def test_device_no_value_applies_where_the_type_can_carry_it() -> None:
    from bridge.config import validate_config
    config = config_with({"type": "int16", "scale": 0.1})
    points = config["devices"][0]["datapoints"]
    points += [{"name": "u", "table": "holding", "address": 1, "type": "uint16"},
               {"name": "f", "table": "holding", "address": 2, "type": "float32"},
               {"name": "own", "table": "holding", "address": 4, "type": "int16",
                "no_value": []}]  # its own list wins, even an empty one
    config["devices"][0]["no_value"] = [-32768]
    made = {p.name: p for p in validate_config(config).devices[0].points()}
    assert made["p"].no_value == {-32768}
    assert made["u"].no_value == set() and made["f"].no_value == set()
    assert made["own"].no_value == set()
    assert decode(made["p"], [0x8000]) is None


# -- the same features in the config file ------------------------------------------------

def config_with(point: dict[str, Any]) -> dict[str, Any]:
    base = {"name": "p", "table": "holding", "address": 0}
    return {"devices": [{"id": "d", "tcp": {"host": "127.0.0.1"}, "unit": 1,
                         "datapoints": [{**base, **point}]}]}


@pytest.mark.parametrize("point", [
    {"type": "uint16", "writable": True, "read": False},
    {"type": "uint32", "constant": True, "table": "input"},
    {"type": "int16", "writable": True, "persistent": True},
    {"type": "bool", "true_value": 2, "false_value": 1},
    {"type": "uint16", "values": {0: "off", 1: "on"}, "mask": 1},
    {"type": "int8"}, {"type": "uint8", "writable": True},
    {"type": "base1000", "word_order": "little", "table": "input"},
    {"type": "uint64", "word_order": "pairs"},
])
def test_config_accepts(point: dict[str, Any]) -> None:
    from bridge.config import validate_config
    config = validate_config(config_with(point))
    made = config.devices[0].points()[0]
    assert made.readable is point.get("read", True)
    assert made.constant is point.get("constant", False)
    assert made.mask == point.get("mask")


@pytest.mark.parametrize(("point", "where", "message"), [
    ({"type": "uint16", "read": False}, "read", "must be writable"),
    ({"type": "uint16", "writable": True, "read": False, "constant": True}, "constant",
     "read once"),
    ({"type": "int16", "persistent": True}, "persistent", "only for writable"),
    ({"type": "bool", "bit": 2, "true_value": 2}, "true_value", "whole"),
    ({"type": "int16", "true_value": 2}, "true_value", "only for bool"),
    ({"type": "uint16", "mask": 1}, "mask", "value map"),
    ({"type": "uint8", "values": {1: "a"}, "mask": 0x1FF}, "mask", "1..255"),
    ({"type": "base1000", "writable": True}, "writable", "read-only"),
    ({"type": "uint32", "byte_order": "pairs"}, "byte_order", "word order"),
    ({"type": "float32", "no_value": [0]}, "no_value", "only for integer types"),
    ({"type": "uint16", "no_value": [65535, -1]}, "no_value[1]", "does not fit uint16"),
])
def test_config_refuses(point: dict[str, Any], where: str, message: str) -> None:
    from bridge.config import validate_config
    from bridge.core.errors import ConfigError
    with pytest.raises(ConfigError) as info:
        validate_config(config_with(point))
    assert f"devices[0].datapoints[0].{where}" in str(info.value)
    assert message in str(info.value)
