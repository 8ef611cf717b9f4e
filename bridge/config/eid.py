"""A device's `eid:` block: its model, and the expansion into datapoints (docs/eid.md).

`expand_eid(data)` runs before a device is validated: it reads the EID (bridge.sgr),
maps its data points, merges them with the device's own `datapoints` (the same
name overrides the EID's), and fills the unit, TCP port and serial settings the
config leaves out from the EID (explicit config wins; an explicit value that
differs from one the EID fixes is noted). Problems with the EID or the options
are raised at `eid.<field>` so the path reads `devices[i].eid.exclude[0]`.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from bridge.sgr.connection import Connection, resolve
from bridge.sgr.eid import Eid
from bridge.sgr.mapping import EidProblems, Mapped, Options, map_eid

# Where relative `eid.file` paths start: the config file's folder (set by load_config).
BASE_DIR: ContextVar[str] = ContextVar("bridge_config_dir", default=".")
SERIAL_KEYS = ("baudrate", "parity", "stopbits", "bytesize")


class EidSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    file: str = Field(min_length=1)
    """The EID XML file, relative to the config file."""
    properties: dict[str, str | int | float] = Field(default_factory=dict)
    """Values for the EID's {{placeholders}} (slave_id, serial_baudrate, ...)."""
    profiles: list[str] | None = None
    """Import only these functional profiles; null: all."""
    exclude: list[str] = Field(default_factory=list)
    """Data points to leave out, as Profile/DataPoint."""
    rename: dict[str, str] = Field(default_factory=dict)
    """Profile/DataPoint -> datapoint name (default: Profile_DataPoint, folded)."""
    writes: bool = True
    """false: import every data point read-only."""

    _mapped: Mapped = PrivateAttr(default_factory=Mapped)
    _eid: Eid | None = PrivateAttr(default=None)
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(Profile/DataPoint, reason) of each data point not imported."""
        return list(self._mapped.skipped)

    @property
    def notes(self) -> list[str]:
        """Things worth a log line: settings that differ from the EID's, read-only RW."""
        return [*self._mapped.notes, *self._notes]

    @property
    def refs(self) -> dict[str, str]:
        """Datapoint name -> the EID's Profile/DataPoint."""
        return dict(self._mapped.refs)

    @property
    def description(self) -> Eid | None:
        return self._eid


class EidFailure(Exception):
    """Problems as (location inside the device, message)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__(problems[0][1])
        self.problems = problems


def expand_eid(data: dict[str, Any]) -> dict[str, Any]:
    """The device's raw config with the EID's datapoints and settings merged in."""
    try:
        settings = EidSettings.model_validate(data["eid"])
    except ValidationError:
        return data  # the device's own validation reports the eid block's errors
    path = os.path.join(BASE_DIR.get(), settings.file)
    # Imported here: the XML schema bindings take ~0.15 s to import, which every
    # start-up paid, with or without an EID in the config.
    from bridge.sgr.parse import EidError, read_eid

    try:
        eid = read_eid(path)
    except EidError as exc:
        raise EidFailure([(("eid", "file"), str(exc))]) from None
    properties = {k: str(v) for k, v in settings.properties.items()}
    orders = _explicit_orders(data)
    try:
        mapped = map_eid(eid, Options(properties, settings.profiles, settings.exclude,
                                      settings.rename, settings.writes, orders))
        connection = resolve(eid, properties)
    except EidProblems as exc:
        raise EidFailure([(("eid", *loc), message) for loc, message in exc.problems]) from None
    _prevalidate(mapped, settings)
    settings._mapped, settings._eid = mapped, eid
    settings._notes.extend(connection.notes)
    merged = dict(data, eid=settings)
    # For Home Assistant's device page, unless the config names them itself.
    if eid.manufacturer:
        merged.setdefault("manufacturer", eid.manufacturer)
    if eid.device_name:
        merged.setdefault("model", eid.device_name)
    merged["datapoints"] = _merge(mapped, data.get("datapoints"), data.get("address_base"))
    _connection(merged, connection, settings)
    return merged


def _explicit_orders(data: dict[str, Any]) -> tuple[str | None, str | None] | None:
    word, byte = data.get("word_order"), data.get("byte_order")
    if word is None and byte is None:
        return None
    return (str(word) if word is not None else None), (str(byte) if byte is not None else None)


def _prevalidate(mapped: Mapped, settings: EidSettings) -> None:
    """A mapped point the datapoint rules refuse is skipped with their reason; a bad
    rename is the user's: an error at eid.rename."""
    from bridge.config.models import DatapointSettings  # models imports this module

    kept = []
    renamed = {new: ref for ref, new in settings.rename.items()}
    for point in mapped.points:
        try:
            DatapointSettings.model_validate(point)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            if point["name"] in renamed and first["loc"][:1] == ("name",):
                raise EidFailure([(("eid", "rename", renamed[point["name"]]),
                                   first["msg"])]) from None
            mapped.skipped.append((mapped.refs.pop(point["name"]), f"{where}: {first['msg']}"))
            continue
        kept.append(point)
    mapped.points = kept


def _merge(mapped: Mapped, own: object, address_base: object) -> object:
    """EID points (addresses in the device's address_base) with the device's own
    datapoints laid over them by name; anything malformed is left to validation."""
    base = address_base if address_base in (0, 1) else 0
    points: list[Any] = [{**p, "address": p["address"] + base} for p in mapped.points]
    if own is None:
        return points
    if not isinstance(own, list):
        return own
    index = {p["name"]: i for i, p in enumerate(points)}
    for item in own:
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in index:
            points[index[name]] = item
            mapped.refs.pop(name, None)
        else:
            points.append(item)
    return points


def _connection(data: dict[str, Any], conn: Connection, settings: EidSettings) -> None:
    if "unit" not in data:
        if conn.unit is None or conn.unit.value == 0:
            raise EidFailure([(("unit",), "required: the EID gives no usable slave id"
                               f" ({'0, broadcast' if conn.unit else 'none'}); set unit")])
        data["unit"] = conn.unit.value
    elif conn.unit is not None and conn.unit.fixed and conn.unit.value != data["unit"]:
        settings._notes.append(f"unit {data['unit']} differs from the EID's {conn.unit.value}")
    tcp, serial = data.get("tcp"), data.get("serial")
    if isinstance(tcp, dict) and conn.tcp_port is not None:
        tcp = data["tcp"] = dict(tcp)  # never change the caller's data
        _fill(tcp, "port", conn.tcp_port.value, conn.tcp_port.fixed, settings, "tcp.")
    if isinstance(serial, dict):
        serial = data["serial"] = dict(serial)
        for key in SERIAL_KEYS:
            if key in conn.serial:
                setting = conn.serial[key]
                _fill(serial, key, setting.value, setting.fixed, settings, "serial.")


def _fill(section: dict[str, Any], key: str, value: object, fixed: bool,
          settings: EidSettings, prefix: str) -> None:
    if key not in section:
        section[key] = value
    elif fixed and str(section[key]).upper() != str(value).upper():
        settings._notes.append(f"{prefix}{key} {section[key]!r} differs from the EID's"
                               f" {value!r} (the config's value is used)")
