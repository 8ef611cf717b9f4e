"""`bridge eid inspect FILE`: the datapoint table the bridge builds from an EID, so a
person can check it against the device's manual before wiring it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.sgr.connection import resolve
from bridge.sgr.mapping import Mapped, Options, map_eid
from bridge.sgr.parse import read_eid

COLUMNS = ("name", "table", "address", "type", "orders", "scale", "unit", "dir", "min..max")


def inspect(path: str, properties: Mapping[str, str]) -> str:
    """The report as text; raises EidError / EidProblems for an unusable EID."""
    eid = read_eid(path)
    mapped = map_eid(eid, Options(properties=properties))
    connection = resolve(eid, properties)
    iface = eid.interface
    lines = [f"{eid.manufacturer or '?'} {eid.device_name}"
             + (f" (EID {eid.version})" if eid.version else ""),
             f"interface {iface.selection}, bitOrder {iface.bit_order}, addresses counted from"
             f" {1 if iface.first_register_is_one else 0} (shown below as protocol addresses,"
             " from 0)"]
    settings = [f"unit {connection.unit.value}" if connection.unit else "unit: not given"]
    if connection.tcp_port:
        settings.append(f"tcp port {connection.tcp_port.value}")
    settings += [f"{k} {s.value}" for k, s in connection.serial.items()]
    lines += ["connection: " + ", ".join(settings), ""]
    lines += table(mapped)
    lines += ["", *_skipped(mapped)]
    if mapped.notes or connection.notes:
        lines += ["", "notes:"] + [f"  {n}" for n in [*mapped.notes, *connection.notes]]
    return "\n".join(lines)


def table(mapped: Mapped) -> list[str]:
    rows = [COLUMNS] + [_row(p) for p in mapped.points]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
           for row in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return [*out, f"{len(mapped.points)} datapoints"]


def _row(p: dict[str, Any]) -> tuple[str, ...]:
    kind = p["type"] + (f"[{p['length']}]" if "length" in p else "") \
        + (f" bit {p['bit']}" if "bit" in p else "")
    if "values" in p:
        kind += " {" + ", ".join(f"{k}: {v}" for k, v in p["values"].items()) + "}"
        if "mask" in p:
            kind += f" mask 0x{p['mask']:X}"
    if "true_value" in p or "false_value" in p:
        kind += f" true={p.get('true_value', 1)} false={p.get('false_value', 0)}"
    orders = "/".join(x for x in (p.get("word_order"), p.get("byte_order")) if x) or "-"
    direction = "W" if p.get("read") is False else "C" if p.get("constant") else \
        "RWP" if p.get("persistent") else "RW" if p.get("writable") else "R"
    limits = "" if "min" not in p and "max" not in p else \
        f"{_num(p.get('min'))}..{_num(p.get('max'))}"
    return (p["name"], p["table"], str(p["address"]), kind, orders,
            _num(p.get("scale", 1.0)), p.get("unit") or "", direction, limits)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _skipped(mapped: Mapped) -> list[str]:
    if not mapped.skipped:
        return ["skipped: none"]
    return [f"skipped ({len(mapped.skipped)}):"] + [
        f"  {ref}: {why}" for ref, why in mapped.skipped]
