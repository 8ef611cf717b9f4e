"""Registers and bits to values and back. Pure: no I/O, no pymodbus.

Conventions (config.md):

- Registers are 16-bit words. `byte_order` orders the two bytes inside each
  word, `word_order` orders the words of a 32/64-bit value; "big"/"big" is the
  Modbus default (most significant first).
- value = raw * scale + offset on reads; writes invert it and round to the
  integer type (never an error for a scaled integer).
- A value map translates raw integers to labels on reads and labels (or the raw
  integers themselves) back on writes. Raw 0 is a value like any other.
- `bit` numbers a bit inside a register, 0 = least significant. A bool in a whole
  register is true when the raw value is not `false_value` (default 0); writing
  sends `true_value` (default 1) or `false_value`.
- int8/uint8 live in the register's low byte (after the byte order); the high
  byte is ignored on reads and written as 0.
- base1000 is two registers of one number, 1000 x high + low (read-only).
- A `mask` is ANDed to the raw value before the value map lookup (the mask is a
  number: 0xFF00 keeps the high byte, unshifted, as the SGr Java library does). A
  write changes only the bits inside the mask (`under_mask`: the device layer reads
  the register first).

Decoding never raises for what a device can send: a raw value outside the value
map decodes to the raw number, a NaN or infinite float to None (JSON has no NaN), and
so does a raw integer the datapoint lists as `no_value` (a "not available" marker).
Encoding raises the typed request errors naming `values.<datapoint>`.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal

from bridge.core.errors import InvalidRequest, OutOfRange
from bridge.core.payload import short
from bridge.core.points import Datapoint, DataType, Order, Value

_FLOAT_FORMAT = {DataType.FLOAT32: ">f", DataType.FLOAT64: ">d"}
_BYTE_TYPES = (DataType.INT8, DataType.UINT8)


# -- words <-> bytes ----------------------------------------------------------

def _reorder(words: Sequence[int], word_order: Order) -> list[int]:
    """Device order <-> most significant first (each order is its own inverse)."""
    if word_order is Order.BIG:
        return list(words)
    if word_order is Order.PAIRS and len(words) % 2 == 0:
        swapped = []
        for i in range(0, len(words), 2):
            swapped += [words[i + 1], words[i]]
        return swapped
    return list(reversed(words))


def words_to_bytes(words: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    """The value's bytes, most significant first, from registers in device order."""
    ordered = _reorder(words, word_order)
    out = bytearray()
    for word in ordered:
        pair = (int(word) & 0xFFFF).to_bytes(2, "big")
        out += pair if byte_order is Order.BIG else pair[::-1]
    return bytes(out)


def bytes_to_words(data: bytes, word_order: Order, byte_order: Order) -> list[int]:
    """Registers in device order for a value's bytes (most significant first)."""
    words = []
    for i in range(0, len(data), 2):
        pair = data[i:i + 2]
        words.append(int.from_bytes(pair if byte_order is Order.BIG else pair[::-1], "big"))
    return _reorder(words, word_order)


def set_bit(register: int, bit: int, on: bool) -> int:
    """`register` with one bit (0 = least significant) set or cleared."""
    return register | (1 << bit) if on else register & ~(1 << bit) & 0xFFFF


def under_mask(point: Datapoint, current: Sequence[int], encoded: Sequence[int]) -> list[int]:
    """The registers to write for a masked datapoint: `encoded`'s bits inside
    `point.mask`, `current`'s (what the device holds now) outside it. The mask applies
    to the value after byte and word order, as on reads."""
    assert point.mask is not None
    old = int.from_bytes(words_to_bytes(current, point.word_order, point.byte_order), "big")
    new = int.from_bytes(words_to_bytes(encoded, point.word_order, point.byte_order), "big")
    merged = old & ~point.mask | new & point.mask
    return bytes_to_words(merged.to_bytes(2 * len(encoded), "big"), point.word_order,
                          point.byte_order)


# -- decode ---------------------------------------------------------------------

def decode(point: Datapoint, raw: Sequence[int] | Sequence[bool]) -> Value | None:
    """The value of `point` from exactly `point.count` registers or bits."""
    if len(raw) != point.count:
        raise ValueError(f"{point.name}: expected {point.count} words, got {len(raw)}")
    if point.table.is_bits:
        return bool(raw[0])
    if point.type is DataType.BOOL:
        word = int(raw[0])
        if point.bit is not None:
            return bool(word >> point.bit & 1)
        return word != (point.false_value or 0)
    if point.type is DataType.STRING:
        data = words_to_bytes([int(w) for w in raw], Order.BIG, point.byte_order)
        return data.decode("utf-8", errors="replace").rstrip("\x00 ")
    if point.type is DataType.BASE1000:
        words = [int.from_bytes(words_to_bytes([int(w)], Order.BIG, point.byte_order), "big")
                 for w in raw]
        high, low = _reorder(words, point.word_order)
        whole = high * 1000 + low
        return None if whole in point.no_value else _scaled(point, whole)
    data = words_to_bytes([int(w) for w in raw], point.word_order, point.byte_order)
    if point.type in _BYTE_TYPES:
        data = data[1:]  # the low byte; the high one is not part of the value
    if point.type.is_float:
        (number,) = struct.unpack(_FLOAT_FORMAT[point.type], data)
        if not math.isfinite(number):
            return None
        if point.type is DataType.FLOAT32:
            # The shortest decimal that is still this float32; more is binary noise
            # (5.000000476837158 for 5.0000005). A fixed 7 digits is not enough: it
            # turns 10000001.0 into 10000000.0, a different float32.
            number = _shortest_float32(number)
        return _scaled(point, number)
    integer = int.from_bytes(data, "big", signed=point.type.is_signed)
    if integer in point.no_value:
        return None
    if point.values:
        if point.mask is not None:
            integer = int.from_bytes(data, "big") & point.mask
        if integer in point.values:
            return point.values[integer]
        return integer
    return _scaled(point, integer)


def _shortest_float32(number: float) -> float:
    packed = struct.pack(">f", number)
    for digits in range(6, 9):  # 9 significant digits always round-trip a float32
        candidate = float(f"{number:.{digits}g}")
        if struct.pack(">f", candidate) == packed:
            return candidate
    return float(f"{number:.9g}")


def _scaled(point: Datapoint, raw: int | float) -> int | float:
    if point.scale == 1 and point.offset == 0:
        return raw
    value = raw * point.scale + point.offset
    # 215 * 0.1 is 21.500000000000004 in binary; 12 significant digits is what
    # any register can honestly carry and prints as the device means it.
    value = float(f"{value:.12g}")
    if point.type.is_integer and value.is_integer() and float(point.scale).is_integer() \
            and float(point.offset).is_integer():
        return int(value)
    return value


# -- encode ---------------------------------------------------------------------

def encode(point: Datapoint, value: object, where: str | None = None
           ) -> list[int] | list[bool]:
    """Registers (or bits) that carry `value` for `point`; checks before encoding.
    Errors name `where` (default `values.<name>`, as in a `write` command)."""
    where = where or f"values.{point.name}"
    if point.table.is_bits:
        return [_as_bool(value, where)]
    if point.type is DataType.BOOL:
        on = _as_bool(value, where)
        if point.bit is not None:
            return [set_bit(0, point.bit, on)]
        raw_bool = (1 if point.true_value is None else point.true_value) if on \
            else (point.false_value or 0)
        return bytes_to_words(raw_bool.to_bytes(2, "big"), Order.BIG, point.byte_order)
    if point.type is DataType.BASE1000:
        raise OutOfRange("base1000 datapoints are read-only", field=where)
    if point.type is DataType.STRING:
        return _encode_string(point, value, where)
    if point.values:
        raw: int | float = _unmap(point, value, where)
    else:
        number = _as_number(value, where)
        _check_limits(point, number, where)
        if isinstance(value, int) and point.scale == 1 and point.offset == 0:
            raw = value  # exact, also beyond float precision (64-bit counters)
        else:
            raw = (number - point.offset) / point.scale
            if not math.isfinite(raw):
                raise OutOfRange(f"{short(value)} does not fit {point.type}", field=where)
            if point.type.is_integer:
                raw = _round_half_up(number, point)
    if point.type.is_float:
        try:
            data = struct.pack(_FLOAT_FORMAT[point.type], raw)
        except OverflowError:
            raise OutOfRange(f"{short(value)} does not fit {point.type}",
                             field=where) from None
    else:
        # Round half up (21.45/0.1 -> 215); a scaled write never raises for rounding.
        integer = raw if isinstance(raw, int) else math.floor(raw + 0.5)
        low, high = point.type.raw_range
        if not low <= integer <= high:
            raise OutOfRange(f"{short(value)} is outside {point.type} ({low}..{high}) "
                             "after scale and offset", field=where)
        if point.type in _BYTE_TYPES:
            integer &= 0xFF  # the low byte; the high byte is written as 0
        data = integer.to_bytes(point.type.words * 2, "big",
                                signed=point.type.is_signed and point.type not in _BYTE_TYPES)
    return bytes_to_words(data, point.word_order, point.byte_order)


def _round_half_up(number: float, point: Datapoint) -> int:
    """(number - offset) / scale rounded half up, in decimal: in binary 21.45/0.1 is
    214.49999999999997, which would round to 214 instead of 215."""
    exact = (Decimal(repr(number)) - Decimal(repr(point.offset))) / Decimal(repr(point.scale))
    return int((exact + Decimal("0.5")).to_integral_value(rounding=ROUND_FLOOR))


_TRUE = frozenset({"true", "on", "1", "yes"})
_FALSE = frozenset({"false", "off", "0", "no"})


def _as_bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    # Plain-text set/<dp> payloads: Home Assistant switches send ON/OFF.
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidRequest(f"expected true or false, got {short(value)}", field=where)


def _as_number(value: object, where: str) -> float:
    if isinstance(value, str):
        value = _numeric_text(value, where)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"expected a number, got {type(value).__name__}", field=where)
    try:
        number = float(value)
    except OverflowError:
        raise OutOfRange("the number is too large", field=where) from None
    if not math.isfinite(number):
        raise InvalidRequest(f"expected a finite number, got {short(value)}", field=where)
    return number


# Plain ASCII decimal: Python's int()/float() also take "1_0" (10), Arabic-Indic and
# other Unicode digits ("١٢" is 12), "nan" and "inf"; a write to hardware takes none
# of them. \Z, not $: "$" would also match before a trailing newline.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_INTEGER = re.compile(r"[+-]?[0-9]+\Z")


def _numeric_text(text: str, where: str) -> int | float:
    """A number written as text ("21.5" from a plain set/<dp> payload or a form)."""
    stripped = text.strip(" \t\r\n")
    if len(stripped) <= 40 and _DECIMAL.match(stripped):
        return int(stripped) if _INTEGER.match(stripped) else float(stripped)
    raise InvalidRequest(f"expected a number, got {short(text)}", field=where)


def _check_limits(point: Datapoint, number: float, where: str) -> None:
    if point.min is not None and number < point.min:
        raise OutOfRange(f"{number:g} is below the minimum {point.min:g}", field=where)
    if point.max is not None and number > point.max:
        raise OutOfRange(f"{number:g} is above the maximum {point.max:g}", field=where)


def _unmap(point: Datapoint, value: object, where: str) -> int:
    """The raw integer for a label, or for a raw integer that the map knows."""
    if isinstance(value, str):
        for raw, label in point.values.items():
            if label == value:
                return raw
    elif isinstance(value, int) and not isinstance(value, bool) and value in point.values:
        return value
    choices = ", ".join(repr(label) for label in point.values.values())
    raise OutOfRange(f"{short(value)} is not one of {choices}", field=where)


def _encode_string(point: Datapoint, value: object, where: str) -> list[int]:
    if not isinstance(value, str):
        raise InvalidRequest(f"expected a string, got {type(value).__name__}", field=where)
    assert point.length is not None
    data = value.encode("utf-8")
    size = point.length * 2
    if len(data) > size:
        raise OutOfRange(f"{len(data)} bytes do not fit {point.length} registers", field=where)
    return bytes_to_words(data.ljust(size, b"\x00"), Order.BIG, point.byte_order)
