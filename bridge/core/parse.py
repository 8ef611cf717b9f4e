"""MQTT payloads -> typed commands, or typed errors (mqtt-api.md, Commands).

Pure and total: whatever bytes arrive, the parsers return a command or raise a
`RequestError` (`Rejected` for `request`, which also carries the id and op that
could be read so the answer can echo them). Nothing else escapes.

Check order for `request`, first failure wins: payload size, UTF-8, JSON
syntax, root is an object, `id`, duplicate keys, `op`, raw-write permission,
unknown keys, then the op's fields in documented order. Permission comes before
the fields so a disabled raw write always says `raw_write_disabled`; unknown
keys come before the fields so a typo (`adress`) is named as such rather than
reported as a missing `address`.

Datapoint writes are checked completely here, once: names, writability and JSON
shape by this module, then type, `min`/`max` and value maps by encoding them with
the codec. The device layer writes the encoded registers without checking again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bridge.core import codec
from bridge.core.commands import (
    Command,
    RawRead,
    RawWrite,
    ReadPoints,
    Request,
    WritePoints,
)
from bridge.core.errors import (
    InvalidRequest,
    NotWritable,
    OutOfRange,
    RawWriteDisabled,
    RequestError,
    UnknownDatapoint,
)
from bridge.core.payload import check_size, kind, load_json, no_duplicates, short
from bridge.core.points import Datapoint, DataType, Table

RAW_READS = {"read_holding_registers": Table.HOLDING, "read_input_registers": Table.INPUT,
             "read_coils": Table.COIL, "read_discrete_inputs": Table.DISCRETE}
RAW_WRITES = {"write_register": (Table.HOLDING, True), "write_registers": (Table.HOLDING, False),
              "write_coil": (Table.COIL, True), "write_coils": (Table.COIL, False)}
OPS = (*RAW_READS, *RAW_WRITES, "read", "write")
# The keys each op takes besides id/op; anything else is refused (typos like "adress").
FIELDS = {**{op: {"address", "count"} for op in RAW_READS},
         **{op: {"address", "value" if single else "values"}
            for op, (_, single) in RAW_WRITES.items()},
         "read": {"datapoints"}, "write": {"values"}}


class Rejected(Exception):
    """A `request` that cannot run: the error, plus whatever id/op was readable."""

    def __init__(self, error: RequestError, request_id: str | int | float | None = None,
                 op: str | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id
        self.op = op


def _int(value: object, name: str, low: int, high: int) -> int:
    # bool is an int in Python but not here; 1.0 is refused: an address is exact.
    if type(value) is not int:
        raise InvalidRequest(f"{name} must be an integer, got {kind(value)}", name)
    if not low <= value <= high:
        raise OutOfRange(f"{name} must be {low}..{high}, got {short(value)}", name)
    return value


def _list(value: object, name: str, low: int, high: int) -> list[Any]:
    if type(value) is not list:
        raise InvalidRequest(f"{name} must be an array, got {kind(value)}", name)
    if not low <= len(value) <= high:
        raise OutOfRange(f"{name} must hold {low}..{high} items, got {len(value)}", name)
    return value


def _span(address: int, count: int, name: str) -> None:
    if address + count > 65536:
        raise OutOfRange(f"{name}: {count} from address {address} runs past 65535", name)


def _require(body: dict[str, Any], key: str) -> Any:
    if key not in body:
        raise InvalidRequest(f"{key} is required", key)
    return body[key]


def _raw_write(op: str, body: dict[str, Any]) -> RawWrite:
    table, single = RAW_WRITES[op]
    address = _int(_require(body, "address"), "address", 0, 65535)
    if single:
        items = [_require(body, "value")]
    else:
        items = _list(_require(body, "values"), "values", 1, table.max_write)
    values: list[Any] = []
    for i, item in enumerate(items):
        where = "value" if single else f"values[{i}]"
        if table is Table.COIL:
            # JSON booleans only: 0/1 would be a coil value by accident of Python.
            if type(item) is not bool:
                raise InvalidRequest(f"{where} must be a boolean, got {kind(item)}", where)
            values.append(item)
        else:
            values.append(_int(item, where, 0, 65535))
    _span(address, len(values), "value" if single else "values")
    return RawWrite(table, address, tuple(values), single)


def _names(items: list[Any], points: Mapping[str, Datapoint], path: str | None) -> ReadPoints:
    """Names -> ReadPoints; fields are `path[i]`, or the name itself when path is None."""
    names: dict[str, None] = {}  # ordered set: asking twice reads once
    for i, name in enumerate(items):
        where = f"{path}[{i}]" if path is not None else str(name)
        if type(name) is not str:
            raise InvalidRequest(f"{where} must be a string, got {kind(name)}", where)
        if name not in points:
            raise UnknownDatapoint(f"{where}: no datapoint {short(name)}", where)
        if not points[name].readable:
            raise InvalidRequest(f"{where}: datapoint {name!r} is write-only", where)
        names[name] = None
    return ReadPoints(tuple(names))


def _all_readable(points: Mapping[str, Datapoint]) -> ReadPoints:
    """Every datapoint but the write-only ones, in config order."""
    return ReadPoints(tuple(name for name, point in points.items() if point.readable))


def _writes(values: object, points: Mapping[str, Datapoint], path: str | None) -> WritePoints:
    """`{"<dp>": value}` -> WritePoints; fields are `path.<dp>`, or `<dp>` at the root."""
    what = path or "payload"
    if type(values) is not dict:
        raise InvalidRequest(f"{what} must be an object, got {kind(values)}", path)
    if not values:
        raise InvalidRequest(f"{what} must name at least one datapoint", path)
    encoded = {}
    for name, value in values.items():
        where = f"{path}.{name}" if path else name
        point = _writable(points, name, where)
        _check_value(point, value, where)
        encoded[name] = tuple(codec.encode(point, value, where))
    return WritePoints(MappingProxyType(dict(values)), MappingProxyType(encoded))


def _writable(points: Mapping[str, Datapoint], name: str, where: str) -> Datapoint:
    point = points.get(name)
    if point is None:
        raise UnknownDatapoint(f"{where}: no datapoint {short(name)}", where)
    if not point.writable:
        raise NotWritable(f"{where}: datapoint {name!r} is not writable", where)
    return point


def _check_value(point: Datapoint, value: object, where: str) -> None:
    if type(value) not in (bool, int, float, str):
        raise InvalidRequest(f"{where} must be a number, boolean or string, got "
                             f"{kind(value)}", where)
    # The codec does the real range checks; these values would crash its arithmetic
    # (float(10**400) overflows) or slip through its comparisons (nan < x is False).
    number: float | None = None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and point.type.is_numeric and not point.values:
            number = float(value)  # "nan", "inf": text the codec would coerce
    except OverflowError:
        raise OutOfRange(f"{where} is too large for a number", where) from None
    except ValueError:
        return  # not numeric text: the codec explains what it expected
    if number is not None and not math.isfinite(number):
        raise OutOfRange(f"{where} must be a finite number, got {short(value)}", where)


def _request_id(body: dict[str, Any]) -> str | int | float | None:
    rid: object = body.get("id")
    # null is taken as absent: results carry "id": null when there was none.
    if rid is None or isinstance(rid, str) or (isinstance(rid, int) and type(rid) is not bool):
        return rid
    if isinstance(rid, float) and math.isfinite(rid):
        return rid
    raise InvalidRequest(f"id must be a string or number, got {kind(rid)}", "id")


def parse_request(payload: bytes, points: Mapping[str, Datapoint],
                  allow_raw_writes: bool) -> Request:
    """A `<base>/<device>/request` payload -> Request, else raise Rejected."""
    duplicates: list[str] = []
    try:
        body = load_json(payload, duplicates)
    except RequestError as exc:
        raise Rejected(exc) from None
    if type(body) is not dict:
        raise Rejected(InvalidRequest(f"payload must be a JSON object, got {kind(body)}"))
    op = body.get("op")
    op = op if isinstance(op, str) else None  # echoed even if unknown: shows the typo
    try:
        rid = None if "id" in duplicates else _request_id(body)
    except RequestError as exc:
        raise Rejected(exc, None, op) from None
    try:
        command = _command(body, duplicates, points, allow_raw_writes)
    except RequestError as exc:
        raise Rejected(exc, rid, op) from None
    assert op is not None  # _command refused anything else
    return Request(rid, op, command)


def _command(body: dict[str, Any], duplicates: list[str], points: Mapping[str, Datapoint],
             allow_raw_writes: bool) -> Command:
    no_duplicates(duplicates)
    op = _require(body, "op")
    if type(op) is not str or op not in OPS:
        raise InvalidRequest(f"op must be one of {', '.join(OPS)}; got {short(op)}", "op")
    if op in RAW_WRITES and not allow_raw_writes:
        raise RawWriteDisabled(f"op {op} is refused: this device does not allow raw writes "
                               "(allow_raw_writes)", "op")
    for key in body:
        if key not in FIELDS[op] and key not in ("id", "op"):
            raise InvalidRequest(f"unknown key {short(key)} for {op}", key)
    if op in RAW_READS:
        table = RAW_READS[op]
        address = _int(_require(body, "address"), "address", 0, 65535)
        count = _int(_require(body, "count"), "count", 1, table.max_read)
        _span(address, count, "count")
        return RawRead(table, address, count)
    if op in RAW_WRITES:
        return _raw_write(op, body)
    if op == "read":
        if "datapoints" not in body:
            return _all_readable(points)
        names = body["datapoints"]
        if type(names) is not list:
            raise InvalidRequest(f"datapoints must be an array, got {kind(names)}",
                                 "datapoints")
        if not names:
            raise InvalidRequest("datapoints must name at least one datapoint "
                                 "(omit it to read all)", "datapoints")
        return _names(names, points, "datapoints")
    return _writes(_require(body, "values"), points, "values")


def parse_set(payload: bytes, points: Mapping[str, Datapoint]) -> WritePoints:
    """A `<base>/<device>/set` payload: `{"<dp>": value, ...}`."""
    duplicates: list[str] = []
    values = load_json(payload, duplicates)
    no_duplicates(duplicates)
    return _writes(values, points, None)


def parse_set_point(name: str, payload: bytes, points: Mapping[str, Datapoint]) -> WritePoints:
    """A `<base>/<device>/set/<dp>` payload: one plain value (`21.5`, `ON`, `heat`).

    A JSON scalar is taken as parsed (`21.5` a number, `true` a boolean,
    `"heat"` a string); anything else is the stripped text, which the codec
    coerces (`ON`, `heat`) or refuses. Two exceptions keep Home Assistant's
    payloads meaning what HA meant: text that is one of the value map's labels is
    that label (a select sends `1` for an option labelled "1", not raw 1), and a
    string datapoint takes the text as it came (a text entity's `123`).
    """
    check_size(payload)
    point = _writable(points, name, name)  # name first: it comes from the topic
    try:
        text = payload.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise InvalidRequest(f"{name}: payload is not UTF-8 text", name) from None
    if not text:
        raise InvalidRequest(f"{name}: an empty payload is not a value", name)
    value: object = text
    try:
        parsed = load_json(text.encode())
    except OutOfRange as exc:  # a number too long to convert
        raise OutOfRange(f"{name}: {exc.message}", name) from None
    except RequestError:
        parsed = None  # not JSON: plain text
    if type(parsed) in (bool, int, float, str):
        value = parsed
    if text in point.values.values() or (point.type is DataType.STRING
                                         and not isinstance(parsed, str)):
        value = text
    _check_value(point, value, name)
    return WritePoints(MappingProxyType({name: value}),
                       MappingProxyType({name: tuple(codec.encode(point, value, name))}))


def parse_get(payload: bytes, points: Mapping[str, Datapoint]) -> ReadPoints:
    """A `<base>/<device>/get` payload: empty (all), `["<dp>", ...]` or `{"<dp>": ...}`.

    `[]` and `{}` are refused like an empty `datapoints` in `read`: naming
    nothing is more likely a bug than a wish to read everything.
    """
    check_size(payload)
    if not payload.strip():
        return _all_readable(points)
    duplicates: list[str] = []
    body = load_json(payload, duplicates)
    if type(body) is list and body:
        return _names(body, points, "")
    if type(body) is dict and body:
        no_duplicates(duplicates)
        return _names(list(body), points, None)
    got = f"an empty {kind(body)}" if body in ([], {}) else kind(body)
    raise InvalidRequest("payload must be empty (all datapoints), a non-empty array of "
                         f"names or an object whose keys are names; got {got}")
