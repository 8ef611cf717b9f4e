"""The vocabulary: tables, data types, byte/word orders and the datapoint.

A `Datapoint` that exists is valid: it checks itself on construction, so the
codec, the coalescer and the command parser never re-check it. Addresses here
are protocol addresses (0-based); `address_base` is applied by the config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

Value = bool | int | float | str

NAME_RE = re.compile(r"[A-Za-z0-9_]{1,64}")  # fullmatch: "$" would take "x\n"
# Topic words a datapoint may not take: they are the device's own sub-topics.
RESERVED_NAMES = frozenset({"set", "get", "request", "response", "availability",
                            "last_seen"})


class Table(StrEnum):
    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        # Identity, not `in (...)`: asked per datapoint per poll.
        return self is Table.COIL or self is Table.DISCRETE

    @property
    def is_writable(self) -> bool:
        return self in (Table.HOLDING, Table.COIL)

    @property
    def max_read(self) -> int:
        """Largest count one read request may ask for (Modbus spec)."""
        return 2000 if self.is_bits else 125

    @property
    def max_write(self) -> int:
        """Largest count one multiple-write request may carry (Modbus spec, FC 15/16)."""
        return 1968 if self.is_bits else 123


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"
    INT8 = "int8"  # the register's low byte, sign-extended (SGr int8)
    UINT8 = "uint8"  # the register's low byte
    # Two registers each holding 0..999 of one number: kWh + 1000 x MWh (SGr
    # layer6Deviation 2RegBase1000). word_order big: the thousands come first.
    BASE1000 = "base1000"

    @property
    def words(self) -> int:
        """Registers the type spans (strings: per `Datapoint.length`)."""
        return _WORDS.get(self, 1)

    @property
    def is_integer(self) -> bool:
        return self in _WORDS and not self.is_float

    @property
    def is_float(self) -> bool:
        return self is DataType.FLOAT32 or self is DataType.FLOAT64

    @property
    def is_signed(self) -> bool:
        return self in (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64)

    @property
    def is_numeric(self) -> bool:
        return self in _WORDS

    @property
    def raw_range(self) -> tuple[int, int]:
        """The raw integers an integer type carries (before scale and offset)."""
        if self is DataType.BASE1000:
            return 0, 0xFFFF * 1000 + 0xFFFF
        bits = 8 if self in (DataType.INT8, DataType.UINT8) else 16 * self.words
        if self.is_signed:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1


_WORDS = {
    DataType.INT8: 1, DataType.UINT8: 1, DataType.BASE1000: 2,
    DataType.INT16: 1, DataType.UINT16: 1,
    DataType.INT32: 2, DataType.UINT32: 2, DataType.FLOAT32: 2,
    DataType.INT64: 4, DataType.UINT64: 4, DataType.FLOAT64: 4,
}


class Order(StrEnum):
    BIG = "big"
    LITTLE = "little"
    # Word order only: 32-bit pairs most significant first, the two words inside
    # each pair least significant first (CD AB GH EF; SGr ChangeWordOrder, as the
    # SGr Java library reads it). For 32-bit values the same as little.
    PAIRS = "pairs"


@dataclass(frozen=True)
class Datapoint:
    """One named value of a device: where it lives and how it is encoded."""

    name: str
    table: Table
    address: int
    type: DataType
    scale: float = 1.0
    offset: float = 0.0
    word_order: Order = Order.BIG
    byte_order: Order = Order.BIG
    bit: int | None = None
    length: int | None = None  # registers, strings only
    values: Mapping[int, str] = field(default_factory=dict)  # value map, raw -> label
    writable: bool = False
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    readable: bool = True  # False: write-only, never polled nor read back
    constant: bool = False  # read once (a device constant), not polled after
    persistent: bool = False  # writes go to the device's flash (SGr RWP): they wear it
    true_value: int | None = None  # bool in a whole register: raw written for true
    false_value: int | None = None  # ... raw meaning false (anything else reads true)
    mask: int | None = None  # value maps: raw AND mask before the lookup
    # Raw integers that mean "no reading" (a device's "not available" marker, such as
    # Stiebel Eltron's -32768): decoded as None, published as null.
    no_value: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(f"datapoint {self.name!r}: {problem}")

    def _problem(self) -> str | None:
        if not NAME_RE.fullmatch(self.name):
            return "name must match [A-Za-z0-9_]+"
        if self.name in RESERVED_NAMES:
            return f"name is reserved ({', '.join(sorted(RESERVED_NAMES))})"
        if self.table.is_bits and self.type is not DataType.BOOL:
            return f"{self.table} datapoints must be of type bool"
        if self.bit is not None and (self.table.is_bits or self.type is not DataType.BOOL):
            return "bit is only for bool datapoints in holding/input registers"
        if self.bit is not None and not 0 <= self.bit <= 15:
            return "bit must be 0..15"
        if (self.length is not None) != (self.type is DataType.STRING):
            return "length is required for string datapoints and only for them"
        if self.length is not None and not 1 <= self.length <= 125:
            return "length must be 1..125 registers"
        if self.address < 0 or self.address + self.count > 65536:
            return f"span {self.address}..{self.address + self.count - 1} is outside 0..65535"
        if self.writable and not self.table.is_writable:
            return f"{self.table} datapoints cannot be writable"
        if self.min is not None and self.max is not None and self.min > self.max:
            return "min must be <= max"
        if self.scale == 0:
            return "scale must not be 0"
        if self.values and not self.type.is_integer:
            return "a value map needs an integer type"
        return self._extension_problem()

    def _extension_problem(self) -> str | None:
        if self.byte_order is Order.PAIRS:
            return "pairs is a word order, not a byte order"
        if not self.readable and not self.writable:
            return "a datapoint that is not readable must be writable"
        if self.constant and not self.readable:
            return "a constant must be readable"
        if self.persistent and not self.writable:
            return "persistent is only for writable datapoints"
        if self.type is DataType.BASE1000 and self.writable:
            return "base1000 datapoints are read-only"
        if (self.true_value is not None or self.false_value is not None) and (
                self.type is not DataType.BOOL or self.bit is not None or self.table.is_bits):
            return "true_value/false_value are for bool datapoints in a whole register"
        for raw in (self.true_value, self.false_value):
            if raw is not None and not 0 <= raw <= 0xFFFF:
                return "true_value/false_value must be 0..65535"
        if self.true_value is not None and self.true_value == self.false_value:
            return "true_value and false_value must differ"
        if self.mask is not None and (not self.values or not 0 < self.mask
                                      <= self.type.raw_range[1] - self.type.raw_range[0]):
            return "mask is for value maps, a positive integer that fits the type"
        if self.no_value and (not self.type.is_integer or not all(
                self.type.raw_range[0] <= raw <= self.type.raw_range[1] for raw in self.no_value)):
            return "no_value is for integer types, raw values that fit the type"
        return None

    @cached_property  # asked per datapoint per poll; a datapoint never changes
    def count(self) -> int:
        """Registers (or bits, on coil/discrete tables) the datapoint spans."""
        if self.table.is_bits or self.type is DataType.BOOL:
            return 1
        if self.type is DataType.STRING:
            assert self.length is not None
            return self.length
        return self.type.words

    @cached_property
    def end(self) -> int:
        """One past the last address."""
        return self.address + self.count
