"""Result objects and the published JSON: shape and key order as in mqtt-api.md."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.errors import InvalidRequest, ModbusExceptionError, ModbusTimeout
from bridge.mqtt.results import failure, success, to_json, utc_timestamp

# 2026-11-23T20:01:02.345Z
T = datetime(2026, 11, 23, 20, 1, 2, 345000, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("t", "expected"), [
    (T, "2026-11-23T20:01:02.345Z"),
    (0.0, "1970-01-01T00:00:00.000Z"),
    (0.0009, "1970-01-01T00:00:00.000Z"),
    (59.9999, "1970-01-01T00:00:59.999Z"),  # truncated: never rolls into :60
    (1.5, "1970-01-01T00:00:01.500Z"),
])
def test_utc_timestamp(t, expected):
    assert utc_timestamp(t) == expected


def test_utc_timestamp_now_parses_back():
    stamp = utc_timestamp()
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z")
    assert abs(parsed.timestamp() - datetime.now(UTC).timestamp()) < 5


def test_success_matches_the_spec_example():
    body = success(request_id="r1", op="read_holding_registers", device="meter1",
                   duration_ms=12.43, now=T, address=0, count=2, registers=[17256, 0])
    assert list(body) == ["id", "op", "ok", "device", "address", "count", "registers", "ts",
                          "duration_ms"]
    assert json.loads(to_json(body)) == {
        "id": "r1", "op": "read_holding_registers", "ok": True, "device": "meter1",
        "address": 0, "count": 2, "registers": [17256, 0],
        "ts": "2026-11-23T20:01:02.345Z", "duration_ms": 12.4}


def test_failure_matches_the_spec_example():
    body = failure(request_id="r1", op="read_holding_registers", device="meter1",
                   error=ModbusExceptionError(2), duration_ms=8.06, now=T)
    assert list(body) == ["id", "op", "ok", "device", "error", "ts", "duration_ms"]
    assert json.loads(to_json(body)) == {
        "id": "r1", "op": "read_holding_registers", "ok": False, "device": "meter1",
        "error": {"code": "modbus_exception", "exception_code": 2,
                  "message": "illegal data address"},
        "ts": "2026-11-23T20:01:02.345Z", "duration_ms": 8.1}


def test_request_errors_carry_their_field():
    body = failure(request_id=None, op="write_registers", device="d",
                   error=InvalidRequest("values[2] must be an integer", "values[2]"),
                   duration_ms=0.01)
    assert body["error"] == {"code": "invalid_request", "field": "values[2]",
                             "message": "values[2] must be an integer"}


def test_id_is_always_present():
    body = success(request_id=None, op="get", device="d", duration_ms=1, values={})
    assert "id" in body and body["id"] is None
    assert json.loads(to_json(body))["id"] is None
    body = failure(request_id=None, op="get", device="d", error=ModbusTimeout("no reply"),
                   duration_ms=1)
    assert body["id"] is None


@pytest.mark.parametrize(("given_ms", "published"), [
    (12.44, 12.4), (12.45001, 12.5), (0.0, 0.0), (-0.3, 0.0), (math.nan, 0.0), (math.inf, 0.0),
])
def test_duration_is_rounded_to_a_tenth(given_ms, published):
    assert success(request_id=1, op="read", device="d", duration_ms=given_ms)["duration_ms"] \
        == published


@pytest.mark.parametrize("key", ["id", "ok", "error", "ts"])  # the others are parameters
def test_fields_cannot_overwrite_the_envelope(key):
    with pytest.raises(ValueError, match=key):
        success(request_id=1, op="read", device="d", duration_ms=1, **{key: 1})


def test_to_json_is_compact_utf8():
    assert to_json({"unit": "°C", "a": [1, True, None]}) == \
        '{"unit":"°C","a":[1,true,null]}'.encode()


def test_to_json_maps_non_finite_floats_to_null():
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": (math.nan,)}
    assert json.loads(to_json(data)) == {"a": None, "b": [None, None, 1.5], "c": [None]}


def test_to_json_accepts_read_only_mappings():
    assert to_json({"values": MappingProxyType({"x": 1})}) == b'{"values":{"x":1}}'


def test_to_json_survives_lone_surrogates():
    # valid JSON input ("\ud800"), so an echoed id may carry one
    out = to_json({"id": "\ud800", "unit": "°C"})
    assert json.loads(out) == {"id": "\ud800", "unit": "°C"}
    out.decode("ascii")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_to_json_always_produces_strict_json(value):
    text = to_json(value).decode("utf-8")
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in output"))
