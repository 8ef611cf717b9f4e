"""Command parsing: every op, every error code with its field, the boundaries, hostile input."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.codec import encode
from bridge.core.commands import RawRead, RawWrite, ReadPoints, Request, WritePoints
from bridge.core.errors import RequestError
from bridge.core.parse import (
    FIELDS,
    OPS,
    Rejected,
    parse_get,
    parse_request,
    parse_set,
    parse_set_point,
)
from bridge.core.payload import MAX_PAYLOAD, load_json
from bridge.core.points import Datapoint, DataType, Table
from bridge.mqtt.results import to_json

POINTS = {p.name: p for p in [
    Datapoint("voltage_l1", Table.INPUT, 0, DataType.FLOAT32),
    Datapoint("setpoint", Table.HOLDING, 10, DataType.INT16, scale=0.1, writable=True),
    Datapoint("mode", Table.HOLDING, 11, DataType.UINT16, values={0: "off", 1: "heat"},
              writable=True),
    Datapoint("relay", Table.COIL, 0, DataType.BOOL, writable=True),
    Datapoint("alarm", Table.DISCRETE, 0, DataType.BOOL),
]}
ALL = ("voltage_l1", "setpoint", "mode", "relay", "alarm")


def req(body: object, allow: bool = True) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_request(raw, POINTS, allow)


def rejected(body: object, allow: bool = True) -> Rejected:
    with pytest.raises(Rejected) as info:
        req(body, allow)
    return info.value


# -- every op, valid ---------------------------------------------------------------------

@pytest.mark.parametrize(("body", "command"), [
    ({"op": "read_holding_registers", "address": 0, "count": 10}, RawRead(Table.HOLDING, 0, 10)),
    ({"op": "read_input_registers", "address": 0, "count": 2}, RawRead(Table.INPUT, 0, 2)),
    ({"op": "read_coils", "address": 0, "count": 8}, RawRead(Table.COIL, 0, 8)),
    ({"op": "read_discrete_inputs", "address": 0, "count": 8}, RawRead(Table.DISCRETE, 0, 8)),
    ({"op": "write_register", "address": 10, "value": 215},
     RawWrite(Table.HOLDING, 10, (215,), True)),
    ({"op": "write_registers", "address": 10, "values": [1, 2, 3]},
     RawWrite(Table.HOLDING, 10, (1, 2, 3), False)),
    ({"op": "write_coil", "address": 3, "value": True}, RawWrite(Table.COIL, 3, (True,), True)),
    ({"op": "write_coils", "address": 3, "values": [True, False]},
     RawWrite(Table.COIL, 3, (True, False), False)),
    ({"op": "read", "datapoints": ["voltage_l1", "setpoint"]},
     ReadPoints(("voltage_l1", "setpoint"))),
    ({"op": "read"}, ReadPoints(ALL)),
    ({"op": "read", "datapoints": ["mode", "mode", "alarm"]}, ReadPoints(("mode", "alarm"))),
    ({"op": "write", "values": {"setpoint": 21.5}}, WritePoints({"setpoint": 21.5})),
    ({"op": "write", "values": {"mode": "heat", "relay": True, "setpoint": "21.5"}},
     WritePoints({"mode": "heat", "relay": True, "setpoint": "21.5"})),
])
def test_every_op(body, command):
    request = req({"id": "r1", **body})
    assert request == Request("r1", body["op"], command)


def test_all_ops_are_covered():
    assert set(OPS) == {
        "read_holding_registers", "read_input_registers", "read_coils",
        "read_discrete_inputs", "write_register", "write_registers", "write_coil",
        "write_coils", "read", "write"}


@pytest.mark.parametrize("rid", ["r1", "", 7, 0, -3, 1.5, 10**30, None])
def test_id_is_echoed_unchanged(rid):
    assert req({"id": rid, "op": "read"}).id == rid
    assert rejected({"id": rid, "op": "read", "bogus": 1}).request_id == rid


def test_id_is_optional():
    assert req({"op": "read"}).id is None


def test_write_points_are_read_only():
    values = req({"op": "write", "values": {"setpoint": 1}}).command.values
    assert isinstance(values, MappingProxyType)


def test_utf8_bom_is_tolerated():
    assert req(b'\xef\xbb\xbf{"op": "read"}').command == ReadPoints(ALL)


# -- boundaries --------------------------------------------------------------------------

def _rr(op, address, count):
    return {"op": op, "address": address, "count": count}


@pytest.mark.parametrize(("body", "ok_or_field"), [
    (_rr("read_holding_registers", 0, 1), None),
    (_rr("read_holding_registers", 0, 125), None),
    (_rr("read_holding_registers", 0, 126), "count"),
    (_rr("read_holding_registers", 0, 0), "count"),
    (_rr("read_input_registers", 65535, 1), None),
    (_rr("read_input_registers", 65536, 1), "address"),
    (_rr("read_input_registers", -1, 1), "address"),
    (_rr("read_input_registers", 65535, 2), "count"),     # span past the end
    (_rr("read_input_registers", 65411, 125), None),      # ends exactly at 65535
    (_rr("read_coils", 0, 2000), None),
    (_rr("read_coils", 0, 2001), "count"),
    (_rr("read_discrete_inputs", 0, 2000), None),
    (_rr("read_discrete_inputs", 0, 2001), "count"),
    (_rr("read_discrete_inputs", 63536, 2000), None),
    (_rr("read_discrete_inputs", 63537, 2000), "count"),
    ({"op": "write_registers", "address": 0, "values": [0] * 123}, None),
    ({"op": "write_registers", "address": 0, "values": [0] * 124}, "values"),
    ({"op": "write_registers", "address": 0, "values": []}, "values"),
    ({"op": "write_registers", "address": 65534, "values": [1, 2]}, None),
    ({"op": "write_registers", "address": 65535, "values": [1, 2]}, "values"),
    ({"op": "write_registers", "address": 0, "values": [0, 65535]}, None),
    ({"op": "write_registers", "address": 0, "values": [0, 65536]}, "values[1]"),
    ({"op": "write_registers", "address": 0, "values": [-1]}, "values[0]"),
    ({"op": "write_register", "address": 65535, "value": 65535}, None),
    ({"op": "write_register", "address": 0, "value": 65536}, "value"),
    ({"op": "write_coils", "address": 0, "values": [True] * 1968}, None),
    ({"op": "write_coils", "address": 0, "values": [True] * 1969}, "values"),
    ({"op": "write_coils", "address": 65535, "values": [True, True]}, "values"),
    ({"op": "write_coil", "address": 65535, "value": False}, None),
])
def test_boundaries(body, ok_or_field):
    if ok_or_field is None:
        req(body)
        return
    error = rejected(body).error
    assert (error.code, error.field) == ("out_of_range", ok_or_field)
    assert ok_or_field.split("[")[0] in error.message


# -- every error code, with its field ---------------------------------------------------

ERRORS = [
    # (payload, allow_raw_writes, code, field)
    (b"{nope", True, "invalid_json", None),
    (b"", True, "invalid_json", None),
    (b'{"op": "read"', True, "invalid_json", None),
    (b'\xff{"op": "read"}', True, "invalid_json", None),
    (b'{"op": "read", "id": NaN}', True, "invalid_json", None),
    (b'{"op": "read", "id": -Infinity}', True, "invalid_json", None),
    (b"[" * 60_000, True, "invalid_json", None),
    (b"[1, 2]", True, "invalid_request", None),
    (b'"read"', True, "invalid_request", None),
    (b"42", True, "invalid_request", None),
    (b"null", True, "invalid_request", None),
    (b" " * (MAX_PAYLOAD + 1), True, "invalid_request", None),
    ({}, True, "invalid_request", "op"),
    ({"op": 3}, True, "invalid_request", "op"),
    ({"op": "read_holding_register", "address": 0, "count": 1}, True, "invalid_request", "op"),
    ({"op": "read", "id": True}, True, "invalid_request", "id"),
    ({"op": "read", "id": {"a": 1}}, True, "invalid_request", "id"),
    ({"op": "read", "id": [1]}, True, "invalid_request", "id"),
    (b'{"op": "read", "id": 1e400}', True, "invalid_request", "id"),
    (b'{"op": "read", "op": "write"}', True, "invalid_request", "op"),
    (b'{"op": "read", "datapoints": [{"a": 1, "a": 2}]}', True, "invalid_request", "a"),
    ({"op": "read_coils", "adress": 0, "count": 1}, True, "invalid_request", "adress"),
    ({"op": "read_coils", "count": 1}, True, "invalid_request", "address"),
    ({"op": "read_coils", "address": 0}, True, "invalid_request", "count"),
    ({"op": "read_coils", "address": 0, "count": 1, "value": 1}, True, "invalid_request",
     "value"),
    ({"op": "read_coils", "address": "0", "count": 1}, True, "invalid_request", "address"),
    ({"op": "read_coils", "address": 1.0, "count": 1}, True, "invalid_request", "address"),
    ({"op": "read_coils", "address": True, "count": 1}, True, "invalid_request", "address"),
    ({"op": "read_coils", "address": None, "count": 1}, True, "invalid_request", "address"),
    ({"op": "read_coils", "address": 0, "count": 2.5}, True, "invalid_request", "count"),
    ({"op": "read_coils", "address": 10**400, "count": 1}, True, "out_of_range", "address"),
    ({"op": "read_coils", "address": 0, "count": -10**400}, True, "out_of_range", "count"),
    (b'{"op": "read", "id": ' + b"9" * 5000 + b"}", True, "out_of_range", None),
    ({"op": "write_register", "address": 0}, True, "invalid_request", "value"),
    ({"op": "write_register", "address": 0, "values": [1]}, True, "invalid_request", "values"),
    ({"op": "write_register", "address": 0, "value": 1.5}, True, "invalid_request", "value"),
    ({"op": "write_register", "address": 0, "value": 10**400}, True, "out_of_range", "value"),
    ({"op": "write_registers", "address": 0, "values": 5}, True, "invalid_request", "values"),
    ({"op": "write_registers", "address": 0, "values": [1, 2, "3"]}, True, "invalid_request",
     "values[2]"),
    ({"op": "write_registers", "address": 0, "values": [1, 2, 10**400]}, True, "out_of_range",
     "values[2]"),
    ({"op": "write_coil", "address": 0, "value": 1}, True, "invalid_request", "value"),
    ({"op": "write_coil", "address": 0, "value": "true"}, True, "invalid_request", "value"),
    ({"op": "write_coils", "address": 0, "values": [True, 0]}, True, "invalid_request",
     "values[1]"),
    ({"op": "read", "datapoints": []}, True, "invalid_request", "datapoints"),
    ({"op": "read", "datapoints": "mode"}, True, "invalid_request", "datapoints"),
    ({"op": "read", "datapoints": None}, True, "invalid_request", "datapoints"),
    ({"op": "read", "datapoints": ["mode", 3]}, True, "invalid_request", "datapoints[1]"),
    ({"op": "read", "datapoints": ["mode", "nope"]}, True, "unknown_datapoint",
     "datapoints[1]"),
    ({"op": "write"}, True, "invalid_request", "values"),
    ({"op": "write", "values": {}}, True, "invalid_request", "values"),
    ({"op": "write", "values": [["setpoint", 1]]}, True, "invalid_request", "values"),
    ({"op": "write", "values": {"nope": 1}}, True, "unknown_datapoint", "values.nope"),
    ({"op": "write", "values": {"voltage_l1": 1}}, True, "not_writable", "values.voltage_l1"),
    ({"op": "write", "values": {"alarm": True}}, True, "not_writable", "values.alarm"),
    ({"op": "write", "values": {"setpoint": None}}, True, "invalid_request", "values.setpoint"),
    ({"op": "write", "values": {"setpoint": [1]}}, True, "invalid_request", "values.setpoint"),
    ({"op": "write", "values": {"setpoint": 10**400}}, True, "out_of_range", "values.setpoint"),
    (b'{"op": "write", "values": {"setpoint": 1e400}}', True, "out_of_range",
     "values.setpoint"),
    ({"op": "write", "values": {"setpoint": "nan"}}, True, "out_of_range", "values.setpoint"),
    ({"op": "write", "values": {"setpoint": "-Infinity"}}, True, "out_of_range",
     "values.setpoint"),
    ({"op": "write_register", "address": 0, "value": 1}, False, "raw_write_disabled", "op"),
    ({"op": "write_registers", "address": 0, "values": [1]}, False, "raw_write_disabled", "op"),
    ({"op": "write_coil", "address": 0, "value": True}, False, "raw_write_disabled", "op"),
    ({"op": "write_coils", "address": 0, "values": [True]}, False, "raw_write_disabled", "op"),
    # disabled wins over the fields' own problems
    ({"op": "write_coils", "adress": -1, "values": "x"}, False, "raw_write_disabled", "op"),
]


@pytest.mark.parametrize(("payload", "allow", "code", "field"), ERRORS)
def test_errors(payload, allow, code, field):
    exc = rejected(payload, allow)
    assert isinstance(exc.error, RequestError)
    assert (exc.error.code, exc.error.field) == (code, field)
    if field is not None:
        assert field in exc.error.message
    to_json(exc.error.to_wire())  # always publishable


def test_raw_reads_are_allowed_without_raw_writes():
    assert req({"op": "read_coils", "address": 0, "count": 1}, allow=False).op == "read_coils"


def test_id_and_op_are_echoed_when_readable():
    exc = rejected({"id": "x1", "op": "write_register", "address": -1, "value": 1})
    assert (exc.request_id, exc.op) == ("x1", "write_register")
    exc = rejected({"id": 9, "op": "frobnicate"})
    assert (exc.request_id, exc.op) == (9, "frobnicate")  # the typo is shown back
    exc = rejected({"id": True, "op": "read"})
    assert (exc.request_id, exc.op) == (None, "read")
    exc = rejected(b'{"id": 1, "id": 2, "op": "read"}')
    assert (exc.request_id, exc.error.field) == (None, "id")
    exc = rejected(b'{"id": "a", "op": "read", "op": "read"}')
    assert exc.request_id == "a"
    assert rejected(b"{bad").request_id is None


@pytest.mark.parametrize(("payload", "value", "noted"), [
    (b'{"op": "read", "n": 1}', {"op": "read", "n": 1}, []),
    (b'{"a": {"b": 1, "b": 2}, "c": [{"d": 1, "d": 3}], "a2": 1}',
     {"a": {"b": 2}, "c": [{"d": 3}], "a2": 1}, ["b", "d"]),
    (b'{"x": 1, "x": 2, "x": 3}', {"x": 3}, ["x", "x"]),
])
def test_duplicate_keys_are_noted_wherever_they_are_and_the_last_one_wins(
        payload, value, noted):
    """payload.load_json decodes with one kept decoder and again, noting duplicates,
    only when a key repeats: the result is the same either way."""
    duplicates: list[str] = []
    assert load_json(payload, duplicates) == value
    assert duplicates == noted
    assert load_json(payload) == value


def test_a_number_too_long_is_refused_even_after_a_duplicate_key():
    with pytest.raises(RequestError) as caught:
        load_json(b'{"a": 1, "a": 2, "n": 1' + b"0" * 5000 + b"}", [])
    assert caught.value.code == "out_of_range"


def test_oversized_payload_names_the_limit():
    exc = rejected(b'{"op": "read", "x": "' + b"a" * MAX_PAYLOAD + b'"}')
    assert str(MAX_PAYLOAD) in exc.error.message


def test_huge_strings_are_not_echoed_in_messages():
    exc = rejected({"op": "x" * 10_000})
    assert len(exc.error.message) < 400


# -- set, set/<dp>, get ------------------------------------------------------------------

def test_parse_set():
    assert parse_set(b'{"setpoint": 21.5, "mode": "heat"}', POINTS) == \
        WritePoints({"setpoint": 21.5, "mode": "heat"})


@pytest.mark.parametrize(("payload", "code", "field"), [
    (b"", "invalid_json", None),
    (b"21.5", "invalid_request", None),
    (b"{}", "invalid_request", None),
    (b'{"nope": 1}', "unknown_datapoint", "nope"),
    (b'{"voltage_l1": 1}', "not_writable", "voltage_l1"),
    (b'{"setpoint": {}}', "invalid_request", "setpoint"),
    (b'{"setpoint": 1e999}', "out_of_range", "setpoint"),
    (b'{"setpoint": 1, "setpoint": 2}', "invalid_request", "setpoint"),
])
def test_parse_set_errors(payload, code, field):
    with pytest.raises(RequestError) as info:
        parse_set(payload, POINTS)
    assert (info.value.code, info.value.field) == (code, field)


@pytest.mark.parametrize(("payload", "value"), [
    (b"21.5", 21.5), (b" 21 \n", 21), (b"true", True), (b"ON", "ON"), (b"heat", "heat"),
    (b'"heat"', "heat"), (b"-3", -3),
])
def test_parse_set_point(payload, value):
    name = ("relay" if isinstance(value, bool) or value == "ON"
            else "mode" if value == "heat" else "setpoint")
    result = parse_set_point(name, payload, POINTS)
    assert result == WritePoints({name: value})
    assert type(result.values[name]) is type(value)
    # Checked and encoded once, here: the device layer writes these as they are.
    assert result.encoded == {name: tuple(encode(POINTS[name], value))}


@pytest.mark.parametrize(("name", "payload", "code"), [
    ("setpoint", b"", "invalid_request"),
    ("setpoint", b"  \n", "invalid_request"),
    ("setpoint", b"\xff", "invalid_request"),
    ("setpoint", b"1" * 5000, "out_of_range"),
    ("setpoint", b"NaN", "out_of_range"),
    ("setpoint", b"null", "invalid_request"),  # plain text, not a number
    ("setpoint", b"[1]", "invalid_request"),
    ("setpoint", b"heat", "invalid_request"),
    ("setpoint", b"5000", "out_of_range"),  # int16 * 0.1: at most 3276.7
    ("mode", b"cool", "out_of_range"),  # not in the value map
    ("setpoint", b"inf", "out_of_range"),
    ("setpoint", b"1e999", "out_of_range"),
    ("nope", b"1", "unknown_datapoint"),
    ("voltage_l1", b"1", "not_writable"),
    ("voltage_l1", b"", "not_writable"),  # the name is checked first
])
def test_parse_set_point_errors(name, payload, code):
    with pytest.raises(RequestError) as info:
        parse_set_point(name, payload, POINTS)
    assert (info.value.code, info.value.field) == (code, name)


def test_set_point_oversized():
    with pytest.raises(RequestError, match=str(MAX_PAYLOAD)):
        parse_set_point("setpoint", b"1" * (MAX_PAYLOAD + 1), POINTS)


@pytest.mark.parametrize(("payload", "names"), [
    (b"", ALL), (b" \n", ALL),
    (b'["mode", "alarm"]', ("mode", "alarm")),
    (b'{"mode": null, "alarm": ""}', ("mode", "alarm")),
])
def test_parse_get(payload, names):
    assert parse_get(payload, POINTS) == ReadPoints(names)


@pytest.mark.parametrize(("payload", "code", "field"), [
    (b"[]", "invalid_request", None),
    (b"{}", "invalid_request", None),
    (b'"mode"', "invalid_request", None),
    (b"[mode]", "invalid_json", None),
    (b'["mode", 1]', "invalid_request", "[1]"),
    (b'["mode", "nope"]', "unknown_datapoint", "[1]"),
    (b'{"nope": 1}', "unknown_datapoint", "nope"),
    (b'{"mode": 1, "mode": 2}', "invalid_request", "mode"),
])
def test_parse_get_errors(payload, code, field):
    with pytest.raises(RequestError) as info:
        parse_get(payload, POINTS)
    assert (info.value.code, info.value.field) == (code, field)


# -- properties: nothing but a command or a typed error ---------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
_odd = st.sampled_from([-1, 65536, 10**400, 1.0, True, None, "", "nope", [], {}]) | json_values
_name = st.sampled_from([*ALL, "nope"])
_fields = {
    "address": st.integers(0, 65535),
    "count": st.integers(1, 2001),
    "value": st.integers(0, 65536) | st.booleans(),
    "values": st.lists(st.integers(0, 65536), min_size=1, max_size=130)
    | st.lists(st.booleans(), min_size=1, max_size=20)
    | st.dictionaries(_name, st.integers(-5, 5) | st.floats() | st.sampled_from(["heat", "x"]),
                      min_size=1, max_size=3),
    "datapoints": st.lists(_name, min_size=1, max_size=6),
}
_KEYS_OF = {op: [k for k in _fields if k in cmd_keys] for op, cmd_keys in FIELDS.items()}


def _commandish(op: str) -> st.SearchStrategy[dict[str, object]]:
    # The op's own fields, each usually plausible and sometimes odd; sometimes a typo.
    plausible = {k: st.one_of(_fields[k], _fields[k], _fields[k], _odd) for k in _KEYS_OF[op]}
    typo = st.fixed_dictionaries({}, optional={"adress": _odd})
    head = st.fixed_dictionaries({"op": st.just(op)},
                                 optional={"id": st.text(max_size=5) | st.integers() | _odd})
    return st.builds(lambda *parts: {k: v for part in parts for k, v in part.items()},
                     head, st.fixed_dictionaries(plausible), st.just({}) | st.just({}) | typo)


# Objects shaped like commands, so the fuzz gets past the first checks and into every
# op's field validation and success path.
commandish = st.sampled_from(OPS).flatmap(_commandish)


def _check_request(payload: bytes) -> None:
    for allow in (True, False):
        try:
            result = parse_request(payload, POINTS, allow)
        except Rejected as exc:
            assert isinstance(exc.error, RequestError)
            to_json({"id": exc.request_id, "op": exc.op, "error": exc.error.to_wire()})
        else:
            assert isinstance(result, Request)
            assert result.op in OPS


def _check_others(payload: bytes) -> None:
    for parse in (parse_set, parse_get, lambda p, pts: parse_set_point("setpoint", p, pts)):
        try:
            parse(payload, POINTS)
        except RequestError as exc:
            to_json(exc.to_wire())


@given(st.binary(max_size=200))
def test_arbitrary_bytes(payload):
    _check_request(payload)
    _check_others(payload)


@given(json_values)
def test_arbitrary_json(value):
    payload = json.dumps(value).encode()
    _check_request(payload)
    _check_others(payload)


@settings(max_examples=300)
@given(commandish)
def test_commandlike_json(body):
    _check_request(json.dumps(body).encode())


@given(st.text(max_size=50))
def test_arbitrary_text(text):
    _check_request(text.encode("utf-8", "surrogatepass"))
    _check_others(text.encode("utf-8", "surrogatepass"))


HA_POINTS = {p.name: p for p in [
    Datapoint("level", Table.HOLDING, 0, DataType.UINT16, values={0: "1", 1: "2", 2: "true"},
              writable=True),
    Datapoint("note", Table.HOLDING, 1, DataType.STRING, length=4, writable=True),
    Datapoint("setpoint", Table.HOLDING, 10, DataType.INT16, scale=0.5, writable=True),
    Datapoint("relay", Table.COIL, 0, DataType.BOOL, writable=True),
]}


@pytest.mark.parametrize(("name", "payload", "raw"), [
    # What Home Assistant sends, written as HA means it.
    ("level", b"1", [0]),          # select: the option labelled "1", not raw 1
    ("level", b"2", [1]),
    ("level", b"true", [2]),
    ("note", b"123", list(encode(HA_POINTS["note"], "123"))),  # text: the text itself
    ("note", b"hi", list(encode(HA_POINTS["note"], "hi"))),
    ("setpoint", b"21.5", [43]),   # number: 21.5 / 0.5
    ("setpoint", b"21", [42]),     # HA sends whole numbers without .0
    ("relay", b"ON", [True]),      # switch
    ("relay", b"OFF", [False]),
])
def test_set_point_takes_home_assistants_payloads(name, payload, raw):
    assert list(parse_set_point(name, payload, HA_POINTS).encoded[name]) == raw
