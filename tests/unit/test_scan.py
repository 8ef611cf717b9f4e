"""Bus scan vocabulary: unit id lists and the `op: scan` command (core/scan.py)."""

from __future__ import annotations

import json

import pytest

from bridge.core.errors import InvalidJson, InvalidRequest
from bridge.core.scan import (
    BridgeRejected,
    Found,
    ScanReport,
    parse_bridge_request,
    parse_units,
    summary_lines,
)
from bridge.core.transport import SERIAL_UNITS, TCP_UNITS


@pytest.mark.parametrize(("spec", "units", "expected"), [
    ("1-247", SERIAL_UNITS, list(range(1, 248))),
    ("1,3,10-12", SERIAL_UNITS, [1, 3, 10, 11, 12]),
    (" 5 , 2-3,2 ", SERIAL_UNITS, [2, 3, 5]),
    (7, SERIAL_UNITS, [7]),
    ([3, 1, "5-6"], SERIAL_UNITS, [1, 3, 5, 6]),
    ("0,255", TCP_UNITS, [0, 255]),
])
def test_unit_lists(spec, units, expected):
    assert parse_units(spec, units) == expected


@pytest.mark.parametrize(("spec", "units", "fragment"), [
    ("0-5", SERIAL_UNITS, "unit 0 is outside 1..247"),
    ("248", SERIAL_UNITS, "outside 1..247"),
    ("256", TCP_UNITS, "outside 0..255"),
    ("9-2", SERIAL_UNITS, "runs backwards"),
    ("a-b", SERIAL_UNITS, "is not a unit id"),
    ("", SERIAL_UNITS, "is not a unit id"),
    ([], SERIAL_UNITS, "no unit ids"),
    (True, SERIAL_UNITS, "expected ids"),
    ({"from": 1}, SERIAL_UNITS, "expected ids"),
    ([1.5], SERIAL_UNITS, "is not a unit id"),
])
def test_bad_unit_lists_name_the_field(spec, units, fragment):
    with pytest.raises(InvalidRequest, match=fragment) as err:
        parse_units(spec, units)
    assert err.value.field == "units"


def test_scan_request_defaults():
    request = parse_bridge_request(b'{"op": "scan", "port": "/dev/ttyUSB0"}')
    assert (request.id, request.port, request.units, request.timeout) == (
        None, "/dev/ttyUSB0", "1-247", 0.2)
    request = parse_bridge_request(json.dumps(
        {"id": 7, "op": "scan", "port": "gw:502", "units": [1], "timeout": 1}).encode())
    assert (request.id, request.units, request.timeout) == (7, [1], 1.0)


@pytest.mark.parametrize(("payload", "error", "field", "request_id"), [
    (b"nope", InvalidJson, None, None),
    (b"[1]", InvalidRequest, None, None),
    (b'{"id": "x", "op": "reboot"}', InvalidRequest, "op", "x"),
    (b'{"id": "x", "op": "scan"}', InvalidRequest, "port", "x"),
    (b'{"op": "scan", "port": ""}', InvalidRequest, "port", None),
    (b'{"op": "scan", "port": "p", "timeout": 0.001}', InvalidRequest, "timeout", None),
    (b'{"op": "scan", "port": "p", "timeout": true}', InvalidRequest, "timeout", None),
    (b'{"op": "scan", "port": "p", "extra": 1}', InvalidRequest, "extra", None),
    (b'{"id": [1], "op": "scan", "port": "p"}', InvalidRequest, "id", None),
])
def test_bad_scan_requests(payload, error, field, request_id):
    with pytest.raises(BridgeRejected) as rejected:
        parse_bridge_request(payload)
    assert isinstance(rejected.value.error, error)
    assert rejected.value.error.field == field
    assert rejected.value.request_id == request_id


def test_report_wire_form_and_summary():
    report = ScanReport("/dev/ttyUSB0", 0.2, [
        Found(1, "data", registers=(42,), ms=12.34), Found(2, "absent", ms=400),
        Found(5, "exception", 2, ms=9.0), Found(9, "skipped"),
        Found(10, "absent", 11, ms=30)], seconds=1.234)
    wire = report.to_wire()
    assert wire == {"port": "/dev/ttyUSB0", "timeout": 0.2, "probed": 5,
                    "present": [{"unit": 1, "status": "data", "registers": [42], "ms": 12.3},
                                {"unit": 5, "status": "exception", "exception_code": 2,
                                 "ms": 9.0}],
                    "skipped": [9], "seconds": 1.23}
    assert list(summary_lines(report)) == [
        "  1  answers with data", "  5  answers with exception 02",
        "2 units answered of 5 probed on /dev/ttyUSB0 in 1.2 s (timeout 0.2 s)"]
