"""Beyond one mosquitto: two brokers joined by mosquitto's own bridge feature with a
bridge instance on each, and the whole contract over MQTT 3.1.1 (clustered brokers
that speak only 3.1.1), where v5-only features are off with a clear log line."""

from __future__ import annotations

import json
import logging

import pytest

from bridge.modbus.simulator import SimulatedLine
from tests.broker import Mosquitto, probe
from tests.conftest import BAUD, meter_unit
from tests.e2e import make_config, running_bridge
from tests.integration.test_instances import BridgeProcess, bridge_config, bridges, unit


def joined_to(port: int) -> str:
    """mosquitto.conf lines bridging the base topic both ways to the broker on `port`."""
    return (f"connection to-broker-{port}\naddress 127.0.0.1:{port}\n"
            "topic modbus/# both 1\n"
            "cleansession true\ntry_private true\nnotifications false\n"
            "restart_timeout 1 2\nstart_type automatic\n")


@pytest.fixture
def brokers(tmp_path):
    first = Mosquitto(tmp_path)
    first.start()
    second = Mosquitto(tmp_path, extra=joined_to(first.port))
    second.start()
    yield first, second
    second.stop()
    first.stop()


async def test_two_brokers_joined_by_a_mosquitto_bridge(tmp_path, brokers):
    first, second = brokers
    async with SimulatedLine([unit(1, 1001)], baudrate=BAUD, name="line-a") as line_a, \
            SimulatedLine([unit(1, 2001), unit(2, 2002)], baudrate=BAUD,
                          name="line-b") as line_b:
        near = BridgeProcess(tmp_path, "near", bridge_config(
            first.port, line_a.path, "near", [("a1", 1)]))
        far = BridgeProcess(tmp_path, "far", bridge_config(
            second.port, line_b.path, "far", [("b1", 1), ("b2", 2)]))
        async with probe(first.port) as p, bridges(near, far):
            # a client on broker 1 sees both instances and all their devices
            for device in ("a1", "b1", "b2"):
                await p.expect(f"modbus/{device}/availability", lambda m: m.text == "online",
                               timeout=30)
            info = (await p.expect("modbus/bridge/far/info", timeout=10)).json()
            assert info["devices"] == ["b1", "b2"]
            assert (await p.expect("modbus/bridge/near/info")).json()["devices"] == ["a1"]
            # and commands a device served through broker 2, getting its answer
            response = await p.request("b2", {"id": "via-2", "op": "read_holding_registers",
                                              "address": 0, "count": 2}, timeout=15)
            assert response["ok"] is True and response["registers"] == [2002, 2]
            mark = p.mark()
            await p.publish("modbus/b1/set/marker", "7")  # not writable: refused by far
            refused = await p.expect("modbus/b1/response", after=mark, timeout=15)
            assert refused.json()["error"]["code"] == "not_writable"
            # a scan through the far bridge, asked on broker 1
            mark = p.mark()
            await p.publish("modbus/bridge/far/request", json.dumps(
                {"id": "s", "op": "scan", "port": line_b.path, "units": "1-3",
                 "timeout": 0.1}))
            scan = (await p.expect("modbus/bridge/far/response", after=mark,
                                   timeout=30)).json()
            assert [x["unit"] for x in scan["present"]] == [1, 2]
            # the far bridge stops: broker 1 learns it
            await far.stop()
            await p.expect("modbus/b1/availability", lambda m: m.text == "offline",
                           timeout=10, after=mark)
            await p.expect("modbus/bridge/far/state", lambda m: m.text == "offline",
                           after=mark)
        assert near.proc is not None and near.proc.returncode == 0
        assert " ERROR " not in far.log and "Traceback" not in far.log


# -- MQTT 3.1.1 ------------------------------------------------------------------------


@pytest.fixture
async def line311():
    async with SimulatedLine([meter_unit(1), meter_unit(2)], baudrate=BAUD) as sim:
        yield sim


async def test_the_contract_over_mqtt_311(mosquitto, line311, caplog):
    caplog.set_level(logging.INFO, logger="bridge")
    config = make_config(mosquitto.port, line311.path,
                         mqtt={"protocol": "3.1.1"}, bridge={"instance": "old"})
    async with running_bridge(config), probe(mosquitto.port, protocol=311) as p:
        await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        assert (await p.expect("modbus/bridge/old/state")).text == "online"
        assert (await p.expect("modbus/bridge/old/info")).json()["devices"] == [
            "meter1", "meter2", "ghost"]
        await p.expect("modbus/ghost/availability", lambda m: m.text == "offline")
        # raw request, named write (read back), get, set/<dp>
        assert (await p.request("meter1", {"op": "read_holding_registers", "address": 0,
                                           "count": 2}))["registers"] == [100, 101]
        written = await p.request("meter1", {"op": "write", "values": {"h4": 12.5}})
        assert written["ok"] is True and written["values"] == {"h4": 12.5}
        assert line311.unit(1).holding[4] == 125
        mark = p.mark()
        await p.publish("modbus/meter2/set/mode", "auto")
        assert (await p.expect("modbus/meter2/response", after=mark)).json()["values"] == {
            "mode": "auto"}
        mark = p.mark()
        await p.publish("modbus/meter2/get", '["h0"]')
        assert (await p.expect("modbus/meter2/response", after=mark)).json()["values"] == {
            "h0": 200}
        # a bridge command (scan) works the same
        mark = p.mark()
        await p.publish("modbus/bridge/old/request", json.dumps(
            {"id": "s", "op": "scan", "port": line311.path, "units": "1-2",
             "timeout": 0.1}))
        scan = (await p.expect("modbus/bridge/old/response", after=mark)).json()
        assert [x["unit"] for x in scan["present"]] == [1, 2]
        # a retained command is not executed (recognised on replay to a new subscription)
        await p.publish("modbus/meter1/request", json.dumps(
            {"id": "kept", "op": "read_holding_registers", "address": 0, "count": 1}),
            retain=True)
    # v5 features: Response Topic, Correlation Data, Message Expiry are not there under
    # 3.1.1; the bridge says so once at start instead of silently not answering them
    messages = [r.getMessage() for r in caplog.records]
    assert any("MQTT 3.1.1: v5-only features are off" in m and "Response Topic" in m
               and "Message Expiry" in m for m in messages)
    # the retained command from before: replayed at the next start, dropped with a log line
    caplog.clear()
    async with running_bridge(config), probe(mosquitto.port, protocol=311) as p:
        await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        mark = p.mark()
        await p.request("meter1", {"op": "read_holding_registers", "address": 1, "count": 1})
        assert not [m for m in p.seen[mark:] if m.topic == "modbus/meter1/response"
                    and m.json().get("id") == "kept"]
        await p.publish("modbus/meter1/request", b"", retain=True)  # clear it
    assert any("dropped a retained message on modbus/meter1/request" in r.getMessage()
               for r in caplog.records)


async def test_v5_client_to_a_311_bridge_gets_the_plain_answer(mosquitto, line311):
    """A v5 client's Response Topic does not survive a 3.1.1 subscriber: the answer is
    on the device's response topic, as the log line at start says."""
    config = make_config(mosquitto.port, line311.path, mqtt={"protocol": "3.1.1"})
    async with running_bridge(config), probe(mosquitto.port) as p:
        await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        mark = p.mark()
        await p.publish("modbus/meter1/request", json.dumps(
            {"id": "v5", "op": "read_holding_registers", "address": 0, "count": 1}),
            response_topic="replies/me/1", correlation=b"c1")
        answer = await p.expect("modbus/meter1/response", after=mark)
        assert answer.json()["registers"] == [100]
        assert not [m for m in p.seen[mark:] if m.topic.startswith("replies/")]
