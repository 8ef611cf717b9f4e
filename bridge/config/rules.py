"""The config rules that span fields: pure functions over validated config models.

Each returns `(location, message)` pairs, the location relative to the model or
list it checks, so `config` reports every problem at the exact field
(`devices[2].datapoints[0].bit`) and all problems of a file in one run. Kept apart
from `config` so that the models read as the file's shape and these as its rules;
nothing here imports pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge.core import ha_classes
from bridge.core.points import NAME_RE, RESERVED_NAMES, DataType, Order

if TYPE_CHECKING:
    from bridge.config.models import DatapointSettings, DeviceLink

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

# fullmatch, not match with "$": "$" also matches before a trailing newline, and an id
# "meter1\n" would build topics mosquitto refuses as malformed.
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# `<base>/bridge/...` is the bridge's own namespace (topics.py), never a device.
BRIDGE_NAMESPACE = "bridge"
# Keys of a device's state JSON besides its datapoints (mqtt-api.md): a datapoint
# with one of these names would be overwritten in `<base>/<device>`.
STATE_KEYS = frozenset({"last_seen"})
ADDRESS_SPACE = 65536  # protocol addresses 0..65535 in each table

SERIAL_LINE = ("baudrate", "parity", "stopbits", "bytesize", "frame_gap")
TCP_LINE = ("framer", "frame_gap")


def _control(char: str) -> bool:
    """C0/C1 control characters: mosquitto refuses them in topics and client ids."""
    return ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F


def client_id_problem(value: str) -> str | None:
    if not value or len(value.encode()) > 128:
        return "must be 1..128 bytes"
    if any(_control(c) for c in value):
        return "must not contain control characters"
    return None


def device_id_problem(value: str) -> str | None:
    if not DEVICE_ID_RE.fullmatch(value):
        return "must match [A-Za-z0-9_-]+, at most 64 characters (it is a level of MQTT topics)"
    if value == BRIDGE_NAMESPACE:
        return f"{value!r} is reserved for the bridge's own topics (<base>/bridge/...)"
    return None


def point_name_problem(value: str) -> str | None:
    if not NAME_RE.fullmatch(value):
        return "must match [A-Za-z0-9_]+, at most 64 characters (it is a level of MQTT topics)"
    if value in RESERVED_NAMES:
        return f"{value!r} is reserved: {', '.join(sorted(RESERVED_NAMES))} are device sub-topics"
    if value in STATE_KEYS:
        return f"{value!r} is reserved: the device's state JSON uses that key itself"
    return None


def topic_prefix_problem(value: str) -> str | None:
    if len(value.encode()) > 256:
        return "must be at most 256 bytes"
    if any(_control(c) for c in value):
        return "must not contain control characters (the broker refuses such topics)"
    if value.startswith("$") or any(
            not level or any(c in level for c in "+#\0") for level in value.split("/")):
        return ("must be MQTT topic levels joined by '/': no empty level, no '+' or '#',"
                " not starting with '$'")
    return None


def _overlap(a: str, b: str) -> bool:
    """One topic prefix equals the other or lies under it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def prefix_problems(base: str, reply: str | None, discovery: str) -> list[Problem]:
    """The reply prefix must share no topic with the bridge's own or HA's: a reply
    there could forge state, availability or discovery (and mqtt-api.md's topics)."""
    found: list[Problem] = []
    if reply is not None:
        for name, other in (("mqtt.base_topic", base), ("homeassistant.prefix", discovery)):
            if _overlap(reply, other):
                found.append((("mqtt", "reply_prefix"),
                              f"{reply!r} overlaps {name} {other!r}: replies there could "
                              "forge the bridge's own topics"))
    return found


def span(dp: DatapointSettings) -> int:
    """Registers (or bits) a valid datapoint spans; as `points.Datapoint.count`."""
    if dp.table.is_bits or dp.type is DataType.BOOL:
        return 1
    if dp.type is DataType.STRING:
        return dp.length or 1
    return dp.type.words


def datapoint_problems(dp: DatapointSettings) -> list[Problem]:
    """Rules between the fields of one datapoint."""
    found: list[Problem] = []
    table, kind = dp.table, dp.type
    if table.is_bits and kind is not DataType.BOOL:
        found.append((("type",), f"{table} datapoints are single bits: type must be bool"))
    if dp.bit is not None and table.is_bits:
        found.append((("bit",), f"bit selects a bit of a register; {table} datapoints are bits"
                                " already (use it on holding or input)"))
    elif dp.bit is not None and kind is not DataType.BOOL:
        found.append((("bit",), f"bit needs type bool, not {kind}"))
    if kind is DataType.STRING and dp.length is None:
        found.append((("length",), "required for string datapoints (registers, 1..125)"))
    if kind is not DataType.STRING and dp.length is not None:
        found.append((("length",), f"only for string datapoints, not {kind}"))
    if dp.word_order is not None and kind.words < 2:
        found.append((("word_order",), f"only for 32/64-bit types, not {kind}: remove it"))
    if dp.byte_order is not None and table.is_bits:
        found.append((("byte_order",), f"{table} datapoints are bits, they have no bytes"))
    if dp.writable and not table.is_writable:
        found.append((("writable",), f"{table} datapoints are read-only"))
    for name in ("min", "max"):
        if getattr(dp, name) is not None and not kind.is_numeric:
            found.append(((name,), f"only for numeric types, not {kind}"))
    if dp.min is not None and dp.max is not None and dp.min > dp.max:
        found.append((("min",), f"min ({dp.min:g}) must be <= max ({dp.max:g})"))
    if dp.scale == 0:
        found.append((("scale",), "must not be 0"))
    for name, neutral in (("scale", 1), ("offset", 0)):
        if getattr(dp, name) != neutral and not kind.is_numeric:
            found.append(((name,), f"only for numeric types, not {kind}"))
    found += _extension_problems(dp)
    if dp.no_value and not kind.is_integer:
        found.append((("no_value",), f"only for integer types, not {kind}"))
    elif dp.no_value:
        low, high = kind.raw_range
        found += [(("no_value", i), f"{raw} does not fit {kind} ({low}..{high})")
                  for i, raw in enumerate(dp.no_value) if not low <= raw <= high]
    if dp.values and not kind.is_integer:
        found.append((("values",), f"a value map needs an integer type, not {kind}"))
    elif dp.values:
        low, high = kind.raw_range
        labels: dict[str, int] = {}
        for raw, label in dp.values.items():
            if not low <= raw <= high:
                found.append((("values", raw), f"{raw} does not fit {kind} ({low}..{high})"))
            if label in labels:
                found.append((("values", raw), f"label {label!r} is also used for"
                                               f" {labels[label]}: the map works both ways"))
            labels.setdefault(label, raw)
    return found


def _extension_problems(dp: DatapointSettings) -> list[Problem]:
    """Write-only, constants, flash writes, bools in a whole register, masks, base1000."""
    found: list[Problem] = []
    if dp.byte_order is Order.PAIRS:
        found.append((("byte_order",), "pairs is a word order: use big or little"))
    if not dp.read and not dp.writable:
        found.append((("read",), "a write-only datapoint (read: false) must be writable"))
    if dp.constant and not dp.read:
        found.append((("constant",), "a constant is read once: it cannot be read: false"))
    if dp.persistent and not dp.writable:
        found.append((("persistent",), "only for writable datapoints"))
    if dp.type is DataType.BASE1000 and dp.writable:
        found.append((("writable",), "base1000 datapoints are read-only"))
    for name in ("true_value", "false_value"):
        if getattr(dp, name) is not None and (dp.type is not DataType.BOOL or dp.bit is not None
                                              or dp.table.is_bits):
            found.append(((name,), "only for bool datapoints in a whole holding/input register"
                                   " (no bit)"))
    if dp.true_value is not None and dp.true_value == dp.false_value:
        found.append((("true_value",), "must differ from false_value"))
    if dp.mask is not None:
        low, high = dp.type.raw_range if dp.type.is_integer else (0, 0)
        if not dp.values:
            found.append((("mask",), "only for datapoints with a value map (values)"))
        elif not 0 < dp.mask <= high - low:
            found.append((("mask",), f"must be 1..{high - low} for {dp.type}"))
    return found


def datapoint_list_problems(items: Sequence[tuple[int, DatapointSettings]],
                            address_base: int | None) -> list[Problem]:
    """Rules across a device's datapoints: unique names, spans inside the address space
    (`address_base` None: the device's own field is invalid, spans are not checked)."""
    found: list[Problem] = []
    names: dict[str, int] = {}
    for i, dp in items:
        if dp.name in names:
            found.append(((i, "name"), f"duplicate datapoint name {dp.name!r}"
                                       f" (also datapoints[{names[dp.name]}])"))
        names.setdefault(dp.name, i)
        if address_base is None:
            continue
        start, last = dp.address - address_base, dp.address + span(dp) - 1
        if start < 0:
            found.append(((i, "address"), f"{dp.address} is below address_base {address_base}"
                                          f" (the device counts from {address_base})"))
        elif start + span(dp) > ADDRESS_SPACE:
            found.append(((i, "address"), f"span {dp.address}..{last} does not fit"
                                          f" {address_base}..{ADDRESS_SPACE - 1 + address_base}"))
    return found


def device_list_problems(items: Sequence[tuple[int, DeviceLink]]) -> list[Problem]:
    """Rules across devices: unique ids; devices on one port agree on its settings."""
    found: list[Problem] = []
    ids: dict[str, int] = {}
    first_on_port: dict[object, DeviceLink] = {}
    for i, dev in items:
        if dev.id in ids:
            found.append(((i, "id"), f"duplicate device id {dev.id!r}"
                                     f" (also devices[{ids[dev.id]}])"))
        ids.setdefault(dev.id, i)
        first = first_on_port.setdefault(dev.port_key, dev)
        if first is dev:
            continue
        section, settings = ("serial", SERIAL_LINE) if dev.serial else ("tcp", TCP_LINE)
        for name in settings:
            mine = getattr(getattr(dev, section), name)
            theirs = getattr(getattr(first, section), name)
            if mine != theirs:
                found.append(((i, section, name),
                              f"devices {first.id!r} and {dev.id!r} share port {dev.port_key}"
                              f" but disagree on {name}: {theirs!r} vs {mine!r}"))
    return found


def homeassistant_problems(dp: DatapointSettings) -> list[Problem]:
    """Unit, device class and state class combinations Home Assistant would reject."""
    ha = dp.homeassistant
    if ha is None:  # defaults derived from the unit always fit
        return []
    explicit: dict[str, str | None] = {
        name: getattr(ha, name) for name in ("device_class", "state_class")
        if name in ha.model_fields_set}
    kind = ha_classes.component_of(dp.type, dp.writable, bool(dp.values))
    return [(("homeassistant", name), message) for name, message in
            ha_classes.problems(kind, dp.unit, dp.type.is_numeric, explicit)]
