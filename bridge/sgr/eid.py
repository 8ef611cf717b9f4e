"""An EID as the mapping needs it: plain, frozen, stdlib only.

`parse.read_eid` fills these from the official xsdata models; tests may build
them by hand. Values are as written in the file: addresses as the EID counts
them, connection fields as text with their `{{placeholders}}` unresolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EidPoint:
    """One data point of a functional profile, with its Modbus configuration."""

    profile: str
    name: str
    direction: str  # R, W, RW, RWP, C
    modbus_type: str  # int16, int16U, float32, boolean, enum, bitmap, string, dateTime, ...
    generic_type: str = ""  # the dataType of the data point (enum, bitmap, float64, ...)
    register_type: str | None = None  # HoldRegister, InputRegister, Coil, DiscreteInput
    address: int | None = None
    registers: int | None = None
    bit_rank: int | None = None
    unit: str | None = None  # SGr unit name (KILOWATT_HOURS)
    minimum: float | None = None
    maximum: float | None = None
    unit_multiplier: float | None = None  # unitConversionMultiplicator
    array_length: int | None = None
    multiplicator: int | None = None  # scalingFactor
    power_of_10: int | None = None
    sunssf: int | None = None
    layer6: str | None = None  # 2RegBase1000_L2H / 2RegBase1000_H2L
    true_value: int | None = None
    false_value: int | None = None
    enum: tuple[tuple[int | None, str], ...] = ()  # (ordinal, literal)
    enum_mask: int | None = None
    bitmap: tuple[tuple[int, str], ...] = ()  # (mask, literal)
    split_addresses: bool = False  # readAddress/writeAddress instead of one address

    @property
    def ref(self) -> str:
        """How users name it in `exclude`/`rename` and how errors name it."""
        return f"{self.profile}/{self.name}"


@dataclass(frozen=True)
class Interface:
    """The Modbus interface description, fields as text (placeholders unresolved)."""

    selection: str  # RTU, TCPIP, RTU-TCPIP, ...
    first_register_is_one: bool = False
    bit_order: str = "BigEndian"
    slave_id: str | None = None
    tcp_port: str | None = None
    tcp_address: str | None = None
    baudrate: str | None = None
    parity: str | None = None
    stopbits: str | None = None
    bytesize: str | None = None


@dataclass(frozen=True)
class Eid:
    device_name: str
    manufacturer: str | None
    interface: Interface
    # configurationList: placeholder name -> default value (None: no default)
    configuration: dict[str, str | None] = field(default_factory=dict)
    points: tuple[EidPoint, ...] = ()
    version: str | None = None
