"""The EID's connection fields, placeholders resolved. Pure.

`{{name}}` takes the device's `eid.properties[name]`, else the EID's
configurationList default; nothing is substituted into the XML. Host and serial
port always come from the bridge's config (the EID's are placeholders or
examples), so only the unit, the TCP port and the serial line settings are
resolved here, each with whether the EID fixes it (a literal) or leaves it open.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bridge.sgr.eid import Eid
from bridge.sgr.mapping import EidProblems, Loc

_PLACEHOLDER = re.compile(r"^\{\{\s*(.*?)\s*\}\}$")
_PARITY = {"EVEN": "E", "ODD": "O", "NONE": "N", "E": "E", "O": "O", "N": "N"}


@dataclass(frozen=True)
class Setting:
    value: int | str
    fixed: bool  # written in the EID itself, not a placeholder


@dataclass
class Connection:
    unit: Setting | None = None
    tcp_port: Setting | None = None
    serial: dict[str, Setting] = field(default_factory=dict)  # baudrate, parity, ...
    notes: list[str] = field(default_factory=list)


def resolve(eid: Eid, properties: Mapping[str, str]) -> Connection:
    """The connection settings the EID gives, each converted to the bridge's terms."""
    iface = eid.interface
    out = Connection()
    problems: list[tuple[Loc, str]] = []
    rows = [("unit", iface.slave_id), ("tcp_port", iface.tcp_port),
            ("baudrate", iface.baudrate), ("parity", iface.parity),
            ("stopbits", iface.stopbits), ("bytesize", iface.bytesize)]
    for name, text in rows:
        value, source = _value(text, eid, properties)
        if value is None:
            continue
        converted = _convert(name, value)
        if converted is None:
            message = f"{value!r} is not a valid {name}"
            if source is not None and source in properties:
                problems.append((("properties", source), message))
            else:
                out.notes.append(f"EID {name}: {message}; ignored")
            continue
        setting = Setting(converted, fixed=source is None)
        if name == "unit":
            out.unit = setting
        elif name == "tcp_port":
            out.tcp_port = setting
        else:
            out.serial[name] = setting
    if problems:
        raise EidProblems(problems)
    return out


def _value(text: str | None, eid: Eid, properties: Mapping[str, str]
           ) -> tuple[str | None, str | None]:
    """(value, placeholder name or None when the EID writes the value itself)."""
    if text is None or not text.strip():
        return None, None
    match = _PLACEHOLDER.match(text.strip())
    if match is None:
        return text.strip(), None
    name = match.group(1)
    value = properties.get(name)
    if value is None:
        value = eid.configuration.get(name)
    return (str(value).strip() or None) if value is not None else None, name


def _convert(name: str, value: str) -> int | str | None:
    if name == "parity":
        return _PARITY.get(value.upper())
    try:
        number = int(value)
    except ValueError:
        return None
    valid = {"unit": range(0, 256), "tcp_port": range(1, 65536), "baudrate": range(1, 10**7),
             "stopbits": (1, 2), "bytesize": (7, 8)}[name]
    return number if number in valid else None
