"""The MQTT contract end to end: real mosquitto, the simulated RS-485 line (units 1
and 2 answer, unit 3 has no responder), a pymodbus TCP gateway, the bridge in-process."""

from __future__ import annotations

import json

import pytest

from tests.broker import probe
from tests.conftest import wait_until
from tests.e2e import make_config, running_bridge


@pytest.fixture
async def bridge(mosquitto, line, gateway):
    config = make_config(mosquitto.port, line.path, gateway.port)
    async with running_bridge(config) as running:
        yield running


@pytest.fixture
async def client(mosquitto, bridge):
    async with probe(mosquitto.port) as p:
        await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        yield p


async def test_late_subscriber_sees_retained_state_and_availability(mosquitto, client):
    await client.expect("modbus/meter1", lambda m: "h0" in m.json())
    await client.expect("modbus/ghost/availability", lambda m: m.text == "offline")
    async with probe(mosquitto.port) as late:
        assert (await late.expect("modbus/bridge/state")).text == "online"
        info = (await late.expect("modbus/bridge/info")).json()
        assert info["devices"] == ["meter1", "meter2", "ghost", "plc"]
        serial = [p for p in info["ports"] if p["kind"] == "serial"]
        assert len(serial) == 1 and serial[0]["devices"] == ["ghost", "meter1", "meter2"]
        assert serial[0]["settings"]["baudrate"] == 19200
        state = (await late.expect("modbus/meter1")).json()
        assert state["h0"] == 100 and state["h1"] == 101 and state["mode"] == "heat"
        assert state["power"] == 1000 * 65536 + 1001
        assert state["last_seen"].endswith("Z")
        assert (await late.expect("modbus/meter1/h0")).text == "100"
        assert (await late.expect("modbus/meter1/relay")).text == "true"
        assert (await late.expect("modbus/meter1/availability")).text == "online"
        assert (await late.expect("modbus/ghost/availability")).text == "offline"
        assert (await late.expect("modbus/plc")).json()["h1"] == 101
        assert all(m.retain for m in late.seen)


@pytest.mark.parametrize(("command", "expected"), [
    ({"op": "read_holding_registers", "address": 0, "count": 3},
     {"address": 0, "count": 3, "registers": [100, 101, 102]}),
    ({"op": "read_input_registers", "address": 2, "count": 2},
     {"address": 2, "count": 2, "registers": [1002, 1003]}),
    ({"op": "read_coils", "address": 0, "count": 3},
     {"address": 0, "count": 3, "bits": [True, False, True]}),
    ({"op": "read_discrete_inputs", "address": 0, "count": 10},
     {"address": 0, "count": 10, "bits": [False, True] + [False] * 8}),
])
async def test_raw_reads(client, command, expected):
    response = await client.request("meter1", {"id": "r1", **command})
    assert response["ok"] is True, response
    assert {k: response[k] for k in expected} == expected
    assert response["id"] == "r1" and response["op"] == command["op"]
    assert response["device"] == "meter1"
    assert response["ts"].endswith("Z") and response["duration_ms"] >= 0


async def test_raw_writes(client, line):
    for command in ({"op": "write_register", "address": 20, "value": 215},
                    {"op": "write_registers", "address": 21, "values": [1, 2, 3]},
                    {"op": "write_coil", "address": 3, "value": True},
                    {"op": "write_coils", "address": 4, "values": [True, False, True]}):
        response = await client.request("meter1", command)
        assert response["ok"] is True, response
    unit = line.unit(1)
    assert [unit.holding[a] for a in (20, 21, 22, 23)] == [215, 1, 2, 3]
    assert [unit.coil[a] for a in (3, 4, 5, 6)] == [True, True, False, True]


async def test_named_read_and_write_with_read_back(client, line):
    response = await client.request("meter1", {"op": "read", "datapoints": ["h0", "mode"]})
    assert response["values"] == {"h0": 100, "mode": "heat"}
    mark = client.mark()
    response = await client.request("meter1", {"id": 7, "op": "write", "values": {"h4": 21.5}})
    assert response["ok"] is True and response["id"] == 7
    assert response["values"] == {"h4": 21.5}
    assert line.unit(1).holding[4] == 215
    await client.expect("modbus/meter1", lambda m: m.json().get("h4") == 21.5, after=mark)
    await client.expect("modbus/meter1/h4", lambda m: m.text == "21.5", after=mark)


async def test_read_all_datapoints_when_none_named(client):
    response = await client.request("meter1", {"op": "read"})
    assert set(response["values"]) == {"h0", "h1", "h4", "mode", "flag", "relay", "door",
                                       "power"}


async def test_set_json_and_set_point_and_get(client, line):
    mark = client.mark()
    await client.publish("modbus/meter1/set", json.dumps({"mode": "auto", "relay": False}))
    response = (await client.expect("modbus/meter1/response", after=mark)).json()
    assert response["ok"] is True and response["op"] == "set"
    assert response["values"] == {"mode": "auto", "relay": False}
    assert line.unit(1).holding[5] == 5 and line.unit(1).coil[0] is False

    for payload, stored in (("ON", True), ("false", False), ("true", True)):
        mark = client.mark()
        await client.publish("modbus/meter1/set/relay", payload)
        response = (await client.expect("modbus/meter1/response", after=mark)).json()
        assert response["values"] == {"relay": stored}, payload
        assert line.unit(1).coil[0] is stored

    mark = client.mark()
    await client.publish("modbus/meter1/set/mode", "off")  # value map entry 0
    response = (await client.expect("modbus/meter1/response", after=mark)).json()
    assert response["values"] == {"mode": "off"} and line.unit(1).holding[5] == 0

    line.unit(1).holding[6] = 0b1000_0001
    mark = client.mark()
    await client.publish("modbus/meter1/set/flag", "true")  # a bit inside a register
    response = (await client.expect("modbus/meter1/response", after=mark)).json()
    assert response["values"] == {"flag": True}
    assert line.unit(1).holding[6] == 0b1000_0101  # other bits untouched

    line.unit(1).holding[0] = 555
    for payload in (b"", b'["h0"]', b'{"h0": null}'):
        mark = client.mark()
        await client.publish("modbus/meter1/get", payload)
        response = (await client.expect("modbus/meter1/response", after=mark)).json()
        assert response["ok"] is True and response["op"] == "get"
        assert response["values"]["h0"] == 555, payload
    await client.expect("modbus/meter1/h0", lambda m: m.text == "555")


ERRORS = [
    (b"{nope", "invalid_json", None),
    (b"[1, 2]", "invalid_request", None),
    (b'{"id": "e1"}', "invalid_request", "op"),
    (b'{"id": "e1", "op": "dance"}', "invalid_request", "op"),
    (b'{"id": "e1", "op": "read_holding_registers", "address": "0", "count": 1}',
     "invalid_request", "address"),
    (b'{"id": "e1", "op": "read_holding_registers", "address": 70000, "count": 1}',
     "out_of_range", "address"),
    (b'{"id": "e1", "op": "read_holding_registers", "address": 0, "count": 126}',
     "out_of_range", "count"),
    (b'{"id": "e1", "op": "read_coils", "address": 0, "count": 2001}', "out_of_range", "count"),
    (b'{"id": "e1", "op": "write_register", "address": 0, "value": 65536}',
     "out_of_range", "value"),
    (b'{"id": "e1", "op": "read", "datapoints": ["h0", "nope"]}', "unknown_datapoint", None),
    (b'{"id": "e1", "op": "write", "values": {"h0": 1}}', "not_writable", None),
    (b'{"id": "e1", "op": "write", "values": {"door": true}}', "not_writable", None),
    (b'{"id": "e1", "op": "write", "values": {"h4": 500}}', "out_of_range", "values.h4"),
    (b'{"id": "e1", "op": "write", "values": {"mode": "turbo"}}', None, "values.mode"),
    (b'{"id": "e1", "op": "read_holding_registers", "address": 9990, "count": 20}',
     "modbus_exception", None),
]


async def test_a_masked_value_map_write_changes_only_its_bits(mosquitto, line):
    """A field inside a register (a value map under a mask, as SGr EIDs declare with
    hexMask): the write keeps the register's other bits, like a bit datapoint."""
    config = make_config(mosquitto.port, line.path)
    config["devices"][0]["datapoints"].append(
        {"name": "stage", "table": "holding", "address": 7, "type": "uint16",
         "mask": 0xFF00, "values": {0x0100: "one", 0x0200: "two", 0: "none"},
         "writable": True})
    line.unit(1).holding[7] = 0x0137  # the low byte is another field
    async with running_bridge(config), probe(mosquitto.port) as p:
        await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        for label, stored in (("two", 0x0237), ("none", 0x0037), ("one", 0x0137)):
            mark = p.mark()
            await p.publish("modbus/meter1/set/stage", label)
            response = (await p.expect("modbus/meter1/response", after=mark)).json()
            assert response["ok"] is True and response["values"] == {"stage": label}
            assert line.unit(1).holding[7] == stored, label

async def test_a_constant_is_read_once_and_a_flash_datapoint_is_named_at_start(
        mosquitto, line, caplog):
    """`constant: true` (an EID's "C" direction: a serial number, a firmware version):
    read by the first poll, kept in every state after, never polled again; asked for
    by name it is read anew. `persistent: true` ("RWP": writes wear flash) is named
    once at start."""
    config = make_config(mosquitto.port, line.path)
    config["devices"][0]["datapoints"] += [
        {"name": "serial_no", "table": "holding", "address": 500, "type": "uint16",
         "constant": True},
        {"name": "setpoint", "table": "holding", "address": 600, "type": "uint16",
         "writable": True, "persistent": True}]
    unit = line.unit(1)
    unit.holding[500] = 4711
    reads: list[tuple[str, int, int]] = []
    get = unit.get

    def recording_get(table: str, address: int, count: int):  # type: ignore[no-untyped-def]
        reads.append((table, address, count))
        return get(table, address, count)

    unit.get = recording_get  # type: ignore[method-assign]

    def reads_of(address: int) -> int:
        return sum(1 for t, a, n in reads if t == "holding" and a <= address < a + n)

    caplog.set_level("INFO", logger="bridge")
    async with running_bridge(config), probe(mosquitto.port) as p:
        first = (await p.expect("modbus/meter1", lambda m: "serial_no" in m.json())).json()
        assert first["serial_no"] == 4711
        assert reads_of(500) == 1
        unit.holding[500] = 1234  # a constant that changes is not a constant: not seen
        polls = reads_of(600)
        for n in range(1, 4):  # three more polls, each with a new h0 to publish
            unit.holding[0] = 1000 + n
            state = (await p.expect("modbus/meter1",
                                    lambda m, n=n: m.json().get("h0") == 1000 + n)).json()
            assert state["serial_no"] == 4711, state
        assert reads_of(600) >= polls + 3
        assert reads_of(500) == 1, reads
        mark = p.mark()
        await p.publish("modbus/meter1/get", json.dumps(["serial_no"]))
        response = (await p.expect("modbus/meter1/response", after=mark)).json()
        assert response["ok"] is True and response["values"] == {"serial_no": 1234}
        assert reads_of(500) == 2
    flash = [r.getMessage() for r in caplog.records if "stored in flash" in r.getMessage()]
    assert flash == ["device meter1: writes to setpoint are stored in flash, which wears: "
                     "write rarely"], flash


@pytest.mark.parametrize(("payload", "code", "field"), ERRORS)
async def test_every_request_error_is_typed_and_names_the_field(client, payload, code, field):
    response = await client.request("meter1", payload)
    assert response["ok"] is False, response
    error = response["error"]
    if code is not None:
        assert error["code"] == code, error
    else:
        assert error["code"] in ("invalid_request", "out_of_range"), error
    if field is not None:
        assert error.get("field") == field or field in error["message"], error
    if b'"id": "e1"' in payload:
        assert response["id"] == "e1"
    if code == "modbus_exception":
        assert error["exception_code"] == 2 and error["message"] == "illegal data address"


async def test_raw_writes_are_refused_unless_allowed(client, line):
    response = await client.request(
        "meter2", {"id": "w", "op": "write_register", "address": 0, "value": 1})
    assert response["error"]["code"] == "raw_write_disabled"
    assert line.unit(2).holding[0] == 200


async def test_a_unit_without_responder_times_out(client):
    response = await client.request("ghost", {"op": "read_holding_registers", "address": 0,
                                              "count": 1})
    assert response["error"]["code"] == "timeout"


async def test_retained_commands_are_never_executed(client, line):
    await client.publish("modbus/meter1/set/h4", "33", retain=True)
    response = await client.request("meter1", {"id": "after", "op": "read",
                                               "datapoints": ["h4"]})
    assert response["values"] == {"h4": 10.4}  # register 4 still holds 104
    assert line.unit(1).holding[4] == 104
    assert not any(m.topic == "modbus/meter1/response" and m.json().get("values") ==
                   {"h4": 33} for m in client.seen)
    await client.publish("modbus/meter1/set/h4", "", retain=True)  # clear it


async def test_v5_response_topic_and_correlation_data(client):
    mark = client.mark()
    await client.publish("modbus/meter1/request",
                         json.dumps({"op": "read_holding_registers", "address": 1, "count": 1}),
                         response_topic="replies/test", correlation=b"\x00corr-1")
    reply = await client.expect("replies/test", after=mark)
    assert reply.json()["registers"] == [101]
    assert reply.properties.CorrelationData == b"\x00corr-1"
    assert reply.retain is False


async def test_reply_topic_may_not_be_a_command_topic(client, line):
    mark = client.mark()
    await client.publish("modbus/meter1/request",
                         json.dumps({"id": "loop", "op": "read", "datapoints": ["h0"]}),
                         response_topic="modbus/meter1/request")
    await client.expect("modbus/meter1/response", lambda m: m.json().get("id") == "loop",
                        after=mark)
    await client.request("meter1", {"id": "next", "op": "read", "datapoints": ["h0"]})
    on_request_topic = [m for m in client.seen[mark:] if m.topic == "modbus/meter1/request"]
    assert len(on_request_topic) == 2  # ours only; the bridge did not reply there


async def test_expired_commands_are_answered_and_never_sent(client, line):
    unit = line.unit(2)
    unit.mode, unit.delay = "slow", 0.25
    before = unit.requests
    ids = [f"x{n}" for n in range(8)]
    mark = client.mark()
    for rid in ids:
        await client.publish("modbus/meter2/request", json.dumps(
            {"id": rid, "op": "read_holding_registers", "address": 0, "count": 1}), expiry=1)
    answers = {}
    for rid in ids:
        m = await client.expect("modbus/meter2/response", lambda m, r=rid: m.json()["id"] == r,
                                after=mark, timeout=15)
        answers[rid] = m.json()
    codes = [a["error"]["code"] if not a["ok"] else "ok" for a in answers.values()]
    assert "expired" in codes and "ok" in codes
    sent = unit.requests - before
    assert sent < len(ids)  # the expired ones never reached the bus


async def test_availability_follows_a_unit_that_stops_and_comes_back(client, line):
    await client.expect("modbus/meter2/availability", lambda m: m.text == "online")
    mark = client.mark()
    line.unit(2).mode = "silent"
    await client.expect("modbus/meter2/availability", lambda m: m.text == "offline", after=mark)
    assert (await client.request("meter1", {"op": "read", "datapoints": ["h0"]}))["ok"]
    mark = client.mark()
    line.unit(2).mode = "ok"
    await client.expect("modbus/meter2/availability", lambda m: m.text == "online", after=mark,
                        timeout=15)


async def test_exception_responses_keep_a_device_online(client, line):
    await client.expect("modbus/meter2/availability", lambda m: m.text == "online")
    mark = client.mark()
    line.unit(2).mode, line.unit(2).exception_code = "exception", 4
    response = await client.request("meter2", {"op": "read", "datapoints": ["h0"]})
    assert response["error"]["code"] == "modbus_exception"
    assert response["error"]["exception_code"] == 4
    assert not [m for m in client.seen[mark:] if m.topic == "modbus/meter2/availability"]


async def test_mqtt_311_works(mosquitto, line):
    config = make_config(mosquitto.port, line.path)
    config["mqtt"]["protocol"] = "3.1.1"
    async with running_bridge(config), probe(mosquitto.port, protocol=4) as p:
        await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        response = await p.request("meter1", {"op": "read_holding_registers", "address": 0,
                                              "count": 1})
        assert response["registers"] == [100]


async def test_clean_stop_publishes_offline(mosquitto, line):
    config = make_config(mosquitto.port, line.path)
    async with probe(mosquitto.port) as p:
        async with running_bridge(config):
            await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        mark = 0
        await p.expect("modbus/meter1/availability", lambda m: m.text == "offline", after=mark)
        await p.expect("modbus/bridge/state", lambda m: m.text == "offline")
    async with probe(mosquitto.port) as late:
        assert (await late.expect("modbus/bridge/state")).text == "offline"
        assert (await late.expect("modbus/meter2/availability")).text == "offline"


async def test_the_port_is_released_after_stop(mosquitto, line, registry, serial_of):
    async with running_bridge(make_config(mosquitto.port, line.path)) as bridge:
        await wait_until(lambda: bridge.runners["meter1"].online is True, what="online")
    wrapper = registry.register(serial_of(), "after")
    await wrapper.connect_async("after")  # the bridge let go of the port
    assert wrapper.is_connected("after")


async def test_without_expiry_the_configured_deadline_applies(mosquitto, line):
    config = make_config(mosquitto.port, line.path, bus={"command_deadline": 0.5})
    config["devices"][1]["poll_interval"] = 0  # meter2: commands only, so we count them
    async with running_bridge(config), probe(mosquitto.port) as p:
        await p.expect("modbus/bridge/state", lambda m: m.text == "online")  # subscribed
        # meter1 (same line, polled) answering proves the port is open: `online` of the
        # bridge alone does not, and a command racing the first open got port_unavailable.
        await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        unit = line.unit(2)
        unit.mode, unit.delay = "slow", 0.2  # each read holds the line for 0.2 s
        before = unit.requests
        ids = [f"d{n}" for n in range(8)]
        mark = p.mark()
        for rid in ids:  # no Message Expiry Interval: bus.command_deadline (0.5 s) applies
            await p.publish("modbus/meter2/request", json.dumps(
                {"id": rid, "op": "read_holding_registers", "address": 0, "count": 1}))
        codes = {}
        for rid in ids:
            m = await p.expect("modbus/meter2/response", lambda m, r=rid: m.json()["id"] == r,
                               after=mark)
            body = m.json()
            codes[rid] = "ok" if body["ok"] else body["error"]["code"]
        assert set(codes.values()) == {"ok", "expired"}, codes
        # Only the commands that made it within the deadline touched the bus.
        assert unit.requests - before == sum(code == "ok" for code in codes.values())
