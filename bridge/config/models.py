"""The sections of the config file as frozen pydantic models (config.md).

Field constraints check single values; rules between fields (`config_rules`) run
in model validators that raise every problem at its own sub-field, so a path
such as `devices[2].datapoints[0].bit` names exactly what is wrong. The root
`Config` (pydantic-settings: file and environment) lives in `config`.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, NoReturn, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from bridge.config import rules
from bridge.config.eid import EidFailure, EidSettings, expand_eid
from bridge.core.instances import DEFAULT_INSTANCE, instance_problem
from bridge.core.points import Datapoint, DataType, Order, Table
from bridge.core.transport import TCP_UNITS, SerialLine, TcpEndpoint, Transport, unit_problem

# Frozen: the running bridge never changes its config (use model_copy(update=...)).
# Attribute docstrings become descriptions in the JSON Schema (`bridge schema`).
# No .inf/.nan anywhere: `timeout: .inf` would wait forever, `scale: .nan` poisons values.
STRICT_KEYS = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True,
                         allow_inf_nan=False)


def raise_problems(title: str, problems: Sequence[rules.Problem],
                   also: ValidationError | None = None) -> NoReturn:
    """Raise all `problems` (and `also`'s errors) at once, each at its own location.

    pydantic merges a ValidationError raised in a validator into the outer one,
    prefixing the locations, so a model-level rule can name the exact sub-field.
    """
    details: list[InitErrorDetails] = [
        {"type": PydanticCustomError(e["type"], e["msg"]), "loc": e["loc"], "input": e["input"]}
        for e in (also.errors(include_url=False) if also is not None else ())]
    details += [{"type": PydanticCustomError("config_rule", message), "loc": loc, "input": None}
                for loc, message in problems]
    raise ValidationError.from_exception_data(title, details)


def check_list(value: object, handler: ValidatorFunctionWrapHandler, title: str,
               model: type[BaseModel],
               check: Callable[[list[tuple[int, Any]]], list[rules.Problem]]) -> Any:
    """Validate a list, then run `check` across its items. When some items are invalid,
    still check those `model` accepts alone, so one run reports every problem."""
    try:
        result = handler(value)
    except ValidationError as failure:
        raise_problems(title, check(_valid_items(value, model)), failure)
    if problems := check(list(enumerate(result))):
        raise_problems(title, problems)
    return result


def _valid_items(value: object, model: type[BaseModel]) -> list[tuple[int, Any]]:
    items: list[tuple[int, Any]] = []
    for i, raw in enumerate(value if isinstance(value, list) else ()):
        if isinstance(raw, Mapping):
            try:  # unknown keys dropped: a typo elsewhere must not hide a duplicate id
                items.append((i, model.model_validate(
                    {k: v for k, v in raw.items() if k in model.model_fields})))
            except ValidationError:
                continue
    return items


def _checked(problem: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        message = problem(value)
        if message is not None:
            raise PydanticCustomError("config_rule", message)
        return value
    return AfterValidator(check)


def _protocol(value: object) -> object:
    """5, "5", 5.0, "v5" -> "5"; "3.1.1", "311", "MQTTv311" -> "3.1.1"."""
    text = str(value).strip().lower().removeprefix("mqtt").lstrip("v").replace(".", "")
    normal = {"5": "5", "50": "5", "311": "3.1.1"}.get(text)
    if normal is None:
        raise PydanticCustomError("config_rule", "expected 5 or 3.1.1")
    return normal


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


DeviceId = Annotated[str, _checked(rules.device_id_problem)]
PointName = Annotated[str, _checked(rules.point_name_problem)]
TopicPrefix = Annotated[str, _checked(rules.topic_prefix_problem)]
MqttProtocol = Annotated[
    Literal["5", "3.1.1"], BeforeValidator(_protocol),
    WithJsonSchema({"enum": [5, "5", "3.1.1"], "description": "MQTT version: 5 or 3.1.1"})]
IpPort = Annotated[int, Field(ge=1, le=65535)]
Text = Annotated[str, Field(min_length=1)]
FrameGap = Annotated[float | None, Field(ge=0)]


class TlsSettings(BaseModel):
    model_config = STRICT_KEYS

    ca_file: str | None = None
    """CA certificates to verify the broker with; null: the system's."""
    cert_file: str | None = None
    """Client certificate (PEM), for brokers that authenticate clients by certificate."""
    key_file: str | None = None
    """The client certificate's private key, unless cert_file contains it."""
    insecure: bool = False
    """Do not check the broker's host name against its certificate (testing only)."""

    @model_validator(mode="after")
    def _key_needs_cert(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise_problems("TlsSettings", [(("key_file",), "needs cert_file")])
        if problems := _tls_file_problems(self):
            raise_problems("TlsSettings", problems)
        return self


def _tls_file_problems(tls: TlsSettings) -> list[rules.Problem]:
    """Load the files now, as the MQTT link will: a missing or wrong file is a config
    error naming the field at `check-config`, not a traceback after start."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    found: list[rules.Problem] = []
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            found.append((("ca_file",), f"{tls.ca_file}: {_file_problem(exc)}"))
    if tls.cert_file is not None:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            where = "key_file" if tls.key_file is not None and isinstance(exc, ssl.SSLError) \
                and "KEY" in str(exc).upper() else "cert_file"
            found.append(((where,), f"{getattr(tls, where)}: {_file_problem(exc)}"))
    return found


def _file_problem(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a usable PEM certificate or key ({exc.reason or exc})"
    return exc.strerror or str(exc)


class MqttSettings(BaseModel):
    model_config = STRICT_KEYS

    host: Text = "localhost"
    port: IpPort = 1883
    username: str | None = None
    password: SecretStr | None = None
    """Never logged; best set from the environment: BRIDGE_MQTT__PASSWORD."""
    client_id: Annotated[str, _checked(rules.client_id_problem)] = "modbus-bridge"
    base_topic: TopicPrefix = "modbus"
    reply_prefix: TopicPrefix | None = "replies"
    """MQTT v5 replies (a command's Response Topic) are published only under
    <reply_prefix>/, never under the base topic or the discovery prefix; null: no v5
    replies. Give each user its own subtree in the broker's ACL (replies/%u/#)."""
    protocol: MqttProtocol = "5"
    qos: Annotated[int, Field(ge=0, le=2)] = 1
    keepalive: Annotated[int, Field(ge=1, le=65535)] = 30
    """Seconds."""
    per_datapoint_topics: bool = True
    """Also publish each value alone on <base>/<device>/<datapoint>."""
    tls: TlsSettings | None = None
    reconnect_min: PositiveFloat = 1.0
    """Seconds before the first reconnect; doubled after each failure up to reconnect_max."""
    reconnect_max: PositiveFloat = 60.0
    inbox_size: Annotated[int, Field(ge=100)] = 20000
    """Messages received but not yet taken up. A flood faster than the bridge answers
    (~1,000 commands/s) waits here; beyond it commands are dropped unanswered and
    counted in the log, so memory stays bounded (~8 KB a message)."""

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.reconnect_min > self.reconnect_max:
            raise_problems("MqttSettings", [(("reconnect_max",), "must be >= reconnect_min")])
        return self


class BridgeSettings(BaseModel):
    model_config = STRICT_KEYS

    instance: Annotated[str, _checked(instance_problem)] | None = None
    """Name of this bridge when several share one broker and base topic: its own
    topics move to <base>/bridge/<instance>/...; device topics stay flat. null: a
    lone bridge, plain <base>/bridge/... topics, known as "main" (HA ids, info)."""

    @property
    def instance_id(self) -> str:
        """The name used in bridge/info and Home Assistant ids."""
        return self.instance or DEFAULT_INSTANCE


class HomeAssistantSettings(BaseModel):
    model_config = STRICT_KEYS

    discovery: bool = False
    """Publish Home Assistant MQTT discovery configs (docs/homeassistant.md)."""
    prefix: TopicPrefix = "homeassistant"
    """Home Assistant's discovery prefix."""
    status_topic: TopicPrefix | None = None
    """Where Home Assistant announces itself (birth message); null: <prefix>/status."""

    @property
    def birth_topic(self) -> str:
        return self.status_topic or f"{self.prefix}/status"


class MetricsSettings(BaseModel):
    model_config = STRICT_KEYS

    port: IpPort | None = None
    """Serve Prometheus metrics on http://<host>:<port>/metrics; null: off."""
    host: Text = "127.0.0.1"
    """Address to bind; loopback by default (the metrics carry no secrets, but a
    scrape from elsewhere is a decision to make, not a default)."""


class BusSettings(BaseModel):
    model_config = STRICT_KEYS

    queue_size: Annotated[int, Field(ge=1)] = 256
    """Commands and polls waiting per port; beyond it commands are answered busy."""
    command_deadline: PositiveFloat = 10.0
    """Seconds a command may wait for its bus, unless its MQTT v5 message expiry says."""
    backoff_max: PositiveFloat = 60.0
    """Longest pause, in seconds, between attempts to reopen a port or reach a dead unit."""


class SerialSettings(BaseModel):
    model_config = STRICT_KEYS

    port: Text
    """Device file (/dev/ttyUSB0, /dev/serial/by-id/...) or pyserial URL (socket://h:p)."""
    baudrate: Annotated[int, Field(gt=0)] = 9600
    parity: Annotated[Literal["N", "E", "O"], BeforeValidator(_upper)] = "E"
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
            false_value=self.false_value, mask=self.mask)


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


__all__ = [
    "BridgeSettings", "BusSettings", "DataType", "DatapointSettings", "DeviceLink",
    "DeviceSettings", "HomeAssistantEntity", "HomeAssistantSettings", "MetricsSettings",
    "MqttSettings", "Order",
    "SerialSettings", "Table", "TcpSettings", "TlsSettings",
]
