"""EID data points -> the bridge's datapoints. Pure: no I/O, no XML, stdlib only.

The table in docs/eid.md is the contract. A data point the bridge cannot serve
faithfully (dateTime, SunSpec scale registers, a register count that does not fit
its type, an address outside 0..65535, an empty name) is skipped with the reason,
never guessed; problems with the user's own options (an unknown property, an
`exclude` naming nothing) are errors at `devices[i].eid.<field>`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bridge.core.points import DataType
from bridge.sgr.eid import Eid, EidPoint
from bridge.sgr.units import home_assistant

Loc = tuple[str | int, ...]
TABLES = {"HoldRegister": "holding", "InputRegister": "input", "Coil": "coil",
          "DiscreteInput": "discrete"}
NUMBERS = {"int8": "int8", "int8U": "uint8", "int16": "int16", "int16U": "uint16",
           "int32": "int32", "int32U": "uint32", "int64": "int64", "int64U": "uint64",
           "float32": "float32", "float64": "float64"}
WORDS = {"int8": 1, "uint8": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4,
         "uint64": 4, "float32": 2, "float64": 4, "base1000": 2}
UNSIGNED_BY_WORDS = {1: "uint16", 2: "uint32", 4: "uint64"}
# bitOrder -> (word_order, byte_order); None: the bridge cannot read it faithfully
ORDERS: dict[str, tuple[str, str] | None] = {
    "BigEndian": ("big", "big"), "ChangeByteOrder": ("big", "little"),
    "ChangeWordOrder": ("pairs", "big"), "ChangeDWordOrder": None, "ChangeBitOrder": None}


class EidProblems(Exception):
    """The user's EID options do not fit the EID: (location in `eid`, message) pairs."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


@dataclass(frozen=True)
class Options:
    """The `eid:` block of a device, as plain values."""

    properties: Mapping[str, str] = field(default_factory=dict)
    profiles: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    rename: Mapping[str, str] = field(default_factory=dict)
    writes: bool = True
    orders: tuple[str | None, str | None] | None = None  # the device's explicit orders


@dataclass
class Mapped:
    points: list[dict[str, Any]] = field(default_factory=list)  # DatapointSettings fields
    refs: dict[str, str] = field(default_factory=dict)  # datapoint name -> Profile/DataPoint
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (Profile/DataPoint, why)
    notes: list[str] = field(default_factory=list)


def fold(text: str) -> str:
    """A topic-safe name: accents folded (ä -> a), anything else outside [A-Za-z0-9_] -> _."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9_]", "_", plain)


def map_eid(eid: Eid, options: Options) -> Mapped:
    orders = _orders(eid.interface.bit_order, options.orders)
    _check_options(eid, options)
    out = Mapped()
    wanted = set(options.profiles) if options.profiles is not None else None
    taken: set[str] = set()
    for point in eid.points:
        if (wanted is not None and point.profile not in wanted) or point.ref in options.exclude:
            continue
        made = _point(point, eid.interface.first_register_is_one, orders, options.writes, out)
        if isinstance(made, str):
            out.skipped.append((point.ref, made))
            continue
        base = options.rename.get(point.ref) or fold(f"{point.profile}_{point.name}")
        for dp in made:
            suffix = dp.pop("suffix", "")
            name = _unique(f"{base}{suffix}", taken)
            out.points.append({"name": name, **dp})
            out.refs[name] = point.ref
    return out


def _orders(bit_order: str, explicit: tuple[str | None, str | None] | None
            ) -> tuple[str, str]:
    """The EID's bitOrder as (word_order, byte_order), each overridden by the device's
    explicit setting; an order the bridge cannot read needs the device to say."""
    word, byte = explicit or (None, None)
    base = ORDERS.get(bit_order)
    if base is None and word is None and byte is None:
        raise EidProblems([((), f"bitOrder {bit_order} is not supported: set the device's"
                                " word_order and byte_order to how it orders registers")])
    default_word, default_byte = base or ("big", "big")
    return word or default_word, byte or default_byte


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _check_options(eid: Eid, options: Options) -> None:
    problems: list[tuple[Loc, str]] = []
    profiles = {p.profile for p in eid.points}
    refs = {p.ref for p in eid.points}
    for i, name in enumerate(options.profiles or ()):
        if name not in profiles:
            problems.append((("profiles", i), f"no functional profile {name!r} in the EID"
                                              f" (it has: {', '.join(sorted(profiles))})"))
    for i, ref in enumerate(options.exclude):
        if ref not in refs:
            problems.append((("exclude", i), f"no data point {ref!r} (Profile/DataPoint)"))
    for ref in options.rename:
        if ref not in refs:
            problems.append((("rename", ref), f"no data point {ref!r} (Profile/DataPoint)"))
    known = set(eid.configuration) | set(placeholders(eid))
    for key in options.properties:
        if key not in known:
            problems.append((("properties", key), f"the EID has no property {key!r} (it has:"
                                                  f" {', '.join(sorted(known)) or 'none'})"))
    if problems:
        raise EidProblems(problems)


def placeholders(eid: Eid) -> list[str]:
    iface = eid.interface
    fields = (iface.slave_id, iface.tcp_port, iface.tcp_address, iface.baudrate, iface.parity,
              iface.stopbits, iface.bytesize)
    return [m for text in fields if text for m in re.findall(r"\{\{\s*([^}]*?)\s*\}\}", text)]


def _point(p: EidPoint, first_is_one: bool, orders: tuple[str, str], writes: bool,
           out: Mapped) -> list[dict[str, Any]] | str:
    """The datapoint(s) for one EID data point, or why it is skipped."""
    if not p.name:
        return "empty data point name"
    if p.sunssf is not None:
        return "sunssf (a SunSpec scale factor register) is not supported"
    if p.split_addresses:
        return "separate readAddress/writeAddress are not supported"
    table = TABLES.get(p.register_type or "")
    if table is None or p.address is None:
        return "no registerType or address"
    if p.modbus_type == "dateTime" or p.generic_type == "dateTime":
        return "dateTime is not supported"
    kind = _kind(p, table)
    if kind.startswith("skip:"):
        return kind[5:]
    dp: dict[str, Any] = {"table": table, "type": kind}
    registers = p.registers if p.registers is not None else WORDS.get(kind, 1)
    if kind == "string":
        if registers < 1 or registers > 125:
            return f"numberOfRegisters {registers} does not fit a string (1..125)"
        dp["length"] = registers
    elif table in ("coil", "discrete") or kind == "bool":
        if registers != 1:
            return f"numberOfRegisters {registers} does not fit a boolean (1)"
    elif registers != WORDS[kind]:
        return f"numberOfRegisters {registers} does not fit {p.modbus_type or kind}" \
               f" ({WORDS[kind]} registers)"
    word, byte = orders
    if table not in ("coil", "discrete"):
        dp["byte_order"] = byte
        if kind == "base1000":  # the layer6 order, flipped when the bitOrder swaps words
            low_first = p.layer6 == "2RegBase1000_L2H"
            dp["word_order"] = "little" if low_first != (word == "pairs") else "big"
        elif WORDS.get(kind, 1) > 1:
            dp["word_order"] = word
    _bool_or_values(p, table, kind, dp)
    numeric = kind in WORDS and "values" not in dp and not p.bitmap
    if numeric:
        scale = Decimal(p.multiplicator if p.multiplicator is not None else 1) \
            * Decimal(10) ** (p.power_of_10 or 0) * Decimal(repr(p.unit_multiplier or 1.0))
        if scale != 1:
            dp["scale"] = float(scale)
        if p.minimum is not None:
            dp["min"] = p.minimum
        if p.maximum is not None:
            dp["max"] = p.maximum
    direction = _direction(p, table, kind, writes, out)
    if isinstance(direction, str):
        return direction
    dp.update(direction)
    unit, ha = home_assistant(p.unit, numeric, DataType(kind), dp)
    if unit is not None:
        dp["unit"] = unit
    if ha:
        dp["homeassistant"] = ha
    return _expand(p, dp, first_is_one)


def _kind(p: EidPoint, table: str) -> str:
    if table in ("coil", "discrete"):
        return "bool" if p.modbus_type == "boolean" or p.generic_type == "boolean" \
            else f"skip:{p.modbus_type} in a {p.register_type} (bits) is not supported"
    if p.layer6 is not None:
        if p.layer6 not in ("2RegBase1000_L2H", "2RegBase1000_H2L"):
            return f"skip:layer6Deviation {p.layer6} is not supported"
        return "base1000"
    if p.modbus_type == "boolean" or (p.generic_type == "boolean" and p.modbus_type
                                      in ("int16", "int16U")):
        return "bool"
    if p.modbus_type == "string":
        return "string"
    if p.modbus_type in ("enum", "bitmap"):
        return UNSIGNED_BY_WORDS.get(p.registers or 1,
                                     f"skip:{p.modbus_type} over {p.registers} registers")
    if p.modbus_type in NUMBERS:
        return NUMBERS[p.modbus_type]
    return f"skip:modbus data type {p.modbus_type or 'missing'} is not supported"


def _bool_or_values(p: EidPoint, table: str, kind: str, dp: dict[str, Any]) -> None:
    if kind == "bool" and table not in ("coil", "discrete"):
        if p.bit_rank is not None:
            dp["bit"] = p.bit_rank
        else:
            for key, raw in (("true_value", p.true_value), ("false_value", p.false_value)):
                if raw is not None:
                    dp[key] = raw & 0xFFFF
    elif p.enum and kind in WORDS:
        values: dict[int, str] = {}
        low, high = DataType(kind).raw_range
        for ordinal, literal in p.enum:
            if ordinal is None or not literal or not low <= ordinal <= high:
                continue  # nothing a device could send for it
            label = literal if literal not in values.values() else f"{literal}_{ordinal}"
            values.setdefault(ordinal, label)
        dp["values"] = values
        if p.enum_mask is not None:
            dp["mask"] = p.enum_mask


def _direction(p: EidPoint, table: str, kind: str, writes: bool,
               out: Mapped) -> dict[str, Any] | str:
    direction = p.direction
    if direction == "W" and not writes:
        return "write-only, and eid.writes is false"
    can_write = table in ("holding", "coil") and kind != "base1000"
    if direction in ("W", "RW", "RWP") and not can_write:
        if direction == "W":
            return f"write-only but in a read-only {p.register_type}"
        out.notes.append(f"{p.ref}: {direction} on a {p.register_type or kind}: read-only")
        direction = "R"
    if direction in ("W", "RW", "RWP") and not writes:
        direction = "R"
    return {"W": {"writable": True, "read": False}, "RW": {"writable": True},
            "RWP": {"writable": True, "persistent": True},
            "C": {"constant": True}}.get(direction, {})


def _expand(p: EidPoint, dp: dict[str, Any], first_is_one: bool) -> list[dict[str, Any]] | str:
    """arrayLength copies and bitmap flags, each at its protocol address."""
    assert p.address is not None
    start = p.address - (1 if first_is_one else 0)
    width = dp.get("length") or WORDS.get(dp["type"], 1)
    count = max(p.array_length or 1, 1)
    last = start + width * count - 1
    if start < 0 or last > 65535:
        return f"address {p.address}{' (counted from 1)' if first_is_one else ''} gives" \
               f" {start}..{last}, outside 0..65535"
    made = []
    for i in range(count):
        copy = {**dp, "address": start + i * width}
        if count > 1:
            copy["suffix"] = f"_{i}"
        made.append(copy)
        made += _bitmap_flags(p, copy)
    return made


def _bitmap_flags(p: EidPoint, dp: dict[str, Any]) -> list[dict[str, Any]]:
    """One read-only bool per single-bit bitmap literal, on its own register and bit."""
    flags = []
    words = WORDS.get(dp["type"], 1)
    for mask, literal in p.bitmap:
        if mask <= 0 or mask & (mask - 1) or mask.bit_length() > 16 * words:
            continue  # several bits (or none): only the raw integer carries it
        bit = mask.bit_length() - 1
        k = words - 1 - bit // 16  # word index, most significant first
        order = dp.get("word_order", "big")
        index = k if order == "big" else k ^ 1 if order == "pairs" else words - 1 - k
        in_word = bit % 16 if dp.get("byte_order", "big") == "big" else (bit % 16) ^ 8
        flags.append({"suffix": f"{dp.get('suffix', '')}_{fold(literal)}", "table": dp["table"],
                      "type": "bool", "address": dp["address"] + index, "bit": in_word})
    return flags
