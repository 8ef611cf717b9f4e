"""A simulated device populated from an EID itself, with its own encoder/decoder.

Independent of the bridge's codec and mapping on purpose: each EID data point's
registers get a known engineering value encoded straight from the EID's fields
(type, numberOfRegisters, scalingFactor, unitConversionMultiplicator,
layer6Deviation, firstRegisterAddressIsOne) with `struct`, so an end-to-end test
compares what the bridge publishes against what the EID says the device holds.
Only BigEndian EIDs (all the samples) are encoded.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

from bridge.modbus.simulator import SimUnit
from bridge.sgr.eid import Eid, EidPoint
from bridge.sgr.mapping import fold

TABLE = {"HoldRegister": "holding", "InputRegister": "input"}
INT_FORMAT = {"int16": ">h", "int16U": ">H", "int32": ">i", "int32U": ">I", "int64": ">q",
              "int64U": ">Q"}
FLOAT_FORMAT = {"float32": ">f", "float64": ">d"}


def scale_of(p: EidPoint) -> float:
    m = p.multiplicator if p.multiplicator is not None else 1
    return m * 10.0 ** (p.power_of_10 or 0) * (p.unit_multiplier or 1.0)


@dataclass
class Expected:
    value: Any
    resolution: float = 0.0  # how far the published number may be from `value`


@dataclass
class Populated:
    unit: SimUnit
    expected: dict[str, Expected] = field(default_factory=dict)  # by datapoint name
    shared: list[str] = field(default_factory=list)  # refs that overlap an earlier point


def populate(eid: Eid, refs: dict[str, str], unit_id: int) -> Populated:
    """A unit whose registers hold a value for each data point the bridge imported
    (`refs`: datapoint name -> Profile/DataPoint, from the device's eid block)."""
    assert eid.interface.bit_order == "BigEndian"
    unit = SimUnit(unit_id, size=65536)
    out = Populated(unit)
    by_ref = {p.ref: p for p in eid.points}
    written: dict[tuple[str, int], str] = {}
    values: dict[str, Any] = {}
    for i, ref in enumerate(dict.fromkeys(refs.values())):
        p = by_ref[ref]
        table, address = TABLE[p.register_type or ""], _address(eid, p)
        words = _encode(p, i)
        cells = [(table, address + k) for k in range(len(words))]
        clash = next((written[c] for c in cells if c in written), None)
        if clash is not None:
            out.shared.append(f"{ref} (registers of {clash})")
            continue
        for (t, a), word in zip(cells, words, strict=True):
            unit.table(t)[a] = word
            written[(t, a)] = ref
    for name, ref in refs.items():
        p = by_ref[ref]
        table, address = TABLE[p.register_type or ""], _address(eid, p)
        count = p.registers or 1
        image = [unit.table(table).get(address + k, 0) for k in range(count)]
        base = fold(f"{p.profile}_{p.name}")
        if name == base:
            values[name] = _decode(p, image)
        else:  # a bitmap flag: base_<literal>
            literal = next(lit for mask, lit in p.bitmap if name == f"{base}_{fold(lit)}")
            mask = next(mask for mask, lit in p.bitmap if lit == literal)
            values[name] = Expected(bool(_raw(image) & mask))
    out.expected = values
    return out


def _address(eid: Eid, p: EidPoint) -> int:
    assert p.address is not None
    return p.address - (1 if eid.interface.first_register_is_one else 0)


def _raw(words: list[int]) -> int:
    return int.from_bytes(b"".join(w.to_bytes(2, "big") for w in words), "big")


def _words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def _encode(p: EidPoint, i: int) -> list[int]:
    """Registers holding a known value for data point number `i`."""
    n = p.registers or 1
    if p.layer6 == "2RegBase1000_L2H":
        return [(i * 37 + 5) % 1000, i + 3]  # kWh part first, then MWh
    if p.modbus_type == "boolean":
        return [i % 2]
    if p.modbus_type == "string":
        text = "".join(chr(ord("A") + (i + k) % 26) for k in range(2 * n - 1))
        return _words(text.encode("ascii") + b"\x00")  # NUL-padded, as devices send
    if p.enum:
        ordinals = [o for o, _ in p.enum if o is not None]
        return _words(ordinals[i % len(ordinals)].to_bytes(2 * n, "big"))
    if p.bitmap:
        return _words(((0x0155 << (i % 3)) & ((1 << 16 * n) - 1)).to_bytes(2 * n, "big"))
    if p.modbus_type in FLOAT_FORMAT:
        engineering = (-1) ** i * (12.5 + 3.25 * i)
        return _words(struct.pack(FLOAT_FORMAT[p.modbus_type], engineering / scale_of(p)))
    fmt = INT_FORMAT[p.modbus_type]
    raw = 1000 + 37 * i
    if fmt.islower() and i % 2:  # signed types: negative values too
        raw = -raw
    return _words(struct.pack(fmt, raw))


def _decode(p: EidPoint, words: list[int]) -> Expected:
    if p.layer6 == "2RegBase1000_L2H":
        return Expected(words[1] * 1000 + words[0])
    if p.modbus_type == "boolean":
        return Expected(words[0] != (p.false_value or 0))
    data = b"".join(w.to_bytes(2, "big") for w in words)
    if p.modbus_type == "string":
        return Expected(data.decode("ascii").rstrip("\x00 "))
    if p.enum:
        raw = int.from_bytes(data, "big")
        return Expected(dict((o, lit) for o, lit in p.enum).get(raw, raw))
    if p.bitmap:
        return Expected(int.from_bytes(data, "big"))
    scale = scale_of(p)
    if p.modbus_type in FLOAT_FORMAT:
        (raw,) = struct.unpack(FLOAT_FORMAT[p.modbus_type], data)
        # float32 carries ~7 significant digits
        return Expected(raw * scale, abs(raw * scale) * (1e-6 if p.modbus_type == "float32"
                                                         else 1e-12))
    (integer,) = struct.unpack(INT_FORMAT[p.modbus_type], data)
    return Expected(integer * scale, abs(scale) / 2)


def matches(published: Any, expected: Expected) -> bool:
    if isinstance(expected.value, bool | str):
        return bool(published == expected.value)
    if not isinstance(published, int | float) or isinstance(published, bool):
        return False
    return math.isclose(published, expected.value, rel_tol=0,
                        abs_tol=expected.resolution + 1e-9 * max(1.0, abs(expected.value)))
