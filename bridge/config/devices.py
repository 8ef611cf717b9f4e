"""A device and its datapoints as config models: the transport (serial or tcp), the
unit, polling, and the register map (config.md, "devices")."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from bridge.config import rules
from bridge.config.eid import EidFailure, EidSettings, expand_eid
from bridge.config.fields import (
    STRICT_KEYS,
    DeviceId,
    FrameGap,
    IpPort,
    PointName,
    Text,
    check_list,
    raise_problems,
    upper_value,
)
from bridge.core.points import Datapoint, DataType, Order, Table
from bridge.core.transport import TCP_UNITS, SerialLine, TcpEndpoint, Transport, unit_problem


class SerialSettings(BaseModel):
    model_config = STRICT_KEYS

    port: Text
    """Device file (/dev/ttyUSB0, /dev/serial/by-id/...) or pyserial URL (socket://h:p)."""
    baudrate: Annotated[int, Field(gt=0)] = 9600
    parity: Annotated[Literal["N", "E", "O"], BeforeValidator(upper_value)] = "E"
    """E is the Modbus serial line default."""
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    frame_gap: FrameGap = None
    """Seconds of silence between frames; null: 3.5 character times."""


class TcpSettings(BaseModel):
    model_config = STRICT_KEYS

    host: Text
    port: IpPort = 502
    framer: Literal["socket", "rtu"] = "socket"
    """socket: Modbus TCP; rtu: RTU frames over TCP (serial gateways)."""
    frame_gap: FrameGap = None
    """Seconds of silence between frames; null: none."""


class HomeAssistantEntity(BaseModel):
    """How a datapoint appears in Home Assistant. A field left out is derived from the
    datapoint (device and state class from its unit); an explicit null means none."""

    model_config = STRICT_KEYS

    device_class: str | None = None
    """Home Assistant's device class (voltage, energy, door, ...)."""
    state_class: Literal["measurement", "total", "total_increasing"] | None = None
    """For long-term statistics; read-only numeric sensors only."""
    entity_category: Literal["config", "diagnostic"] | None = None
    enabled: bool = True
    """false: the entity exists but is disabled until a user enables it."""
    icon: str | None = None
    """An icon such as mdi:flash."""


class DatapointSettings(BaseModel):
    model_config = STRICT_KEYS

    name: PointName
    table: Table
    address: Annotated[int, Field(ge=0)]
    """As the device's documentation counts (see the device's address_base)."""
    type: DataType
    unit: str | None = None
    label: str | None = None
    """Display name (the Home Assistant entity's name); null: the datapoint's name."""
    homeassistant: HomeAssistantEntity | None = None
    scale: float = 1.0
    """value = raw * scale + offset"""
    offset: float = 0.0
    writable: bool = False
    min: float | None = None
    max: float | None = None
    values: dict[int, str] = Field(default_factory=dict)
    """Value map raw -> label, used both ways; integer types only."""
    bit: Annotated[int | None, Field(ge=0, le=15)] = None
    """A bool inside a holding/input register, 0 = least significant."""
    length: Annotated[int | None, Field(ge=1, le=125)] = None
    """Registers of a string datapoint."""
    word_order: Order | None = None
    """32/64-bit types only; null: the device's."""
    byte_order: Order | None = None
    """null: the device's."""
    read: bool = True
    """false: write-only; never polled nor read back (the device refuses reads)."""
    constant: bool = False
    """A value that never changes (serial number, rating): read once, not polled."""
    persistent: bool = False
    """Writes are stored in the device's flash, which wears: write rarely."""
    true_value: Annotated[int | None, Field(ge=0, le=65535)] = None
    """bool in a whole register: the raw value written for true (default 1)."""
    false_value: Annotated[int | None, Field(ge=0, le=65535)] = None
    """bool in a whole register: the raw value meaning false (default 0); any other is true."""
    mask: Annotated[int | None, Field(gt=0)] = None
    """Value maps: the raw value is ANDed with this before the lookup (0xFF00: high byte)."""
    no_value: list[int] | None = None
    """Raw values that mean "no reading" (published as null); null: the device's."""

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if problems := rules.datapoint_problems(self) + rules.homeassistant_problems(self):
            raise_problems("DatapointSettings", problems)
        return self

    def to_point(self, device: DeviceSettings) -> Datapoint:
        """The vocabulary's datapoint: protocol address, the device's orders by default."""
        return Datapoint(
            name=self.name, table=self.table, address=self.address - device.address_base,
            type=self.type, scale=self.scale, offset=self.offset,
            word_order=self.word_order or device.word_order,
            byte_order=self.byte_order or device.byte_order,
            bit=self.bit, length=self.length, values=dict(self.values), writable=self.writable,
            min=self.min, max=self.max, unit=self.unit, readable=self.read,
            constant=self.constant, persistent=self.persistent, true_value=self.true_value,
            false_value=self.false_value, mask=self.mask,
            no_value=frozenset(self.no_value if self.no_value is not None
                               else _fitting(device.no_value, self.type)))


def _fitting(raws: list[int], kind: DataType) -> list[int]:
    """The device's `no_value` entries that an integer datapoint of `kind` can carry."""
    if not kind.is_integer:
        return []
    low, high = kind.raw_range
    return [raw for raw in raws if low <= raw <= high]


class DeviceLink(BaseModel):
    """A device's identity and transport: what the checks across devices need."""

    model_config = STRICT_KEYS

    id: DeviceId
    """Used in topics; unique."""
    serial: SerialSettings | None = None
    """Exactly one of serial and tcp."""
    tcp: TcpSettings | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> Self:
        if self.serial is None and self.tcp is None:
            raise_problems(type(self).__name__, [(("serial",), "missing: a device needs serial"
                                                               " or tcp")])
        if self.serial is not None and self.tcp is not None:
            raise_problems(type(self).__name__, [(("tcp",), "a device has serial or tcp,"
                                                            " not both")])
        return self

    @property
    def transport(self) -> Transport:
        if self.serial is not None:
            s = self.serial
            return SerialLine(s.port, s.baudrate, s.parity, s.stopbits, s.bytesize)
        assert self.tcp is not None
        return TcpEndpoint(self.tcp.host, self.tcp.port, self.tcp.framer)

    @property
    def port_key(self) -> str:
        """The transport's identity, as the registry keys it: equal keys share a client."""
        return self.transport.key

    @property
    def frame_gap(self) -> float | None:
        return self.serial.frame_gap if self.serial else self.tcp.frame_gap if self.tcp else None


class DeviceSettings(DeviceLink):
    name: str | None = None
    """For humans and Home Assistant."""
    manufacturer: str | None = None
    """Shown on the device's page in Home Assistant."""
    model: str | None = None
    sw_version: str | None = None
    unit: Annotated[int, Field(ge=TCP_UNITS.start, le=TCP_UNITS.stop - 1)]
    """Modbus unit (slave) id: 1..247 on a serial line and RTU over TCP, 0..255 on
    Modbus TCP (many TCP devices answer only on 0 or 255)."""
    timeout: PositiveFloat = 0.5
    """Seconds per attempt."""
    retries: Annotated[int, Field(ge=0, le=5)] = 1
    offline_after: Annotated[int, Field(ge=1)] = 3
    """Consecutive failed transactions before availability turns offline."""
    poll_interval: NonNegativeFloat = 5.0
    """Seconds; 0: no polling (commands only)."""
    address_base: Literal[0, 1] = 0
    """1 if the device's documentation counts addresses from 1."""
    word_order: Order = Order.BIG
    """Default for the device's 32/64-bit datapoints."""
    byte_order: Order = Order.BIG
    no_value: list[int] = []
    """Raw values that mean "no reading" for each integer datapoint whose type they fit
    (a "not available" marker: -32768 on Stiebel Eltron heat pumps)."""
    allow_raw_writes: bool = False
    max_gap: Annotated[int, Field(ge=0, le=125)] = 8
    """Unused registers a poll may read through to merge two reads into one."""
    datapoints: list[DatapointSettings] = Field(default_factory=list)
    eid: EidSettings | None = None
    """A SmartGridready device description (docs/eid.md): its data points become
    datapoints, merged with `datapoints` (the same name overrides the EID's)."""

    @model_validator(mode="before")
    @classmethod
    def _expand_eid(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("eid") is not None \
                and not isinstance(data["eid"], EidSettings):
            try:
                return expand_eid(data)
            except EidFailure as exc:
                raise_problems(cls.__name__, exc.problems)
        return data

    @field_validator("datapoints", mode="wrap")
    @classmethod
    def _datapoints(cls, value: object, handler: ValidatorFunctionWrapHandler,
                    info: ValidationInfo) -> Any:
        base = info.data.get("address_base")  # absent when address_base itself is invalid
        return check_list(value, handler, cls.__name__, DatapointSettings,
                          lambda items: rules.datapoint_list_problems(items, base))

    @model_validator(mode="after")
    def _unit_fits_transport(self) -> Self:
        if (problem := unit_problem(self.unit, self.transport.units)) is not None:
            raise_problems(type(self).__name__, [(("unit",), problem)])
        return self

    @model_validator(mode="after")
    def _convertible(self) -> Self:
        for i, dp in enumerate(self.datapoints):
            try:  # unreachable if the rules are complete; it keeps points() total
                dp.to_point(self)
            except ValueError as exc:
                raise_problems(type(self).__name__, [(("datapoints", i), str(exc))])
        return self

    def points(self) -> tuple[Datapoint, ...]:
        """The datapoints as `points.Datapoint`s (protocol addresses), in config order."""
        return tuple(dp.to_point(self) for dp in self.datapoints)
