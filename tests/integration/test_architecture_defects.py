"""Defects found when the flat package was split into layers, each through the real
path: a TCP gateway answering exception 11, two spellings of one TCP host, a register
map with a hole inside one coalesced block."""

from __future__ import annotations

from typing import Any

from bridge.app import Bridge
from bridge.config import validate_config
from bridge.modbus.simulator import SimUnit
from tests.broker import Mosquitto, probe
from tests.conftest import TcpGateway
from tests.e2e import running_bridge


def tcp_device(dev_id: str, host: str, port: int, unit: int = 1,
               **extra: Any) -> dict[str, Any]:
    return {"id": dev_id, "tcp": {"host": host, "port": port}, "unit": unit,
            "timeout": 0.5, "retries": 0, "offline_after": 2, "poll_interval": 0.2,
            "datapoints": [{"name": "h0", "table": "holding", "address": 0, "type": "uint16"},
                           {"name": "h3", "table": "holding", "address": 3, "type": "uint16"}],
            **extra}


def config(broker: int, *devices: dict[str, Any]) -> dict[str, Any]:
    return {"mqtt": {"host": "127.0.0.1", "port": broker, "client_id": "arch-test",
                     "reconnect_min": 0.1, "reconnect_max": 1.0},
            "devices": list(devices)}


async def test_a_gateway_saying_the_unit_did_not_respond_takes_it_offline(
        mosquitto: Mosquitto) -> None:
    """Exception 11 is the gateway's "target device failed to respond": the unit is
    unreachable, so the device goes offline (it stayed online forever), and comes
    back when the gateway relays answers again. Exception 2 keeps it online."""
    unit = SimUnit(1, holding={0: 7, 3: 9})
    gateway = TcpGateway([unit])
    await gateway.start()
    try:
        async with running_bridge(config(mosquitto.port,
                                         tcp_device("behind_gw", "127.0.0.1", gateway.port))), \
                probe(mosquitto.port) as p:
            await p.expect("modbus/behind_gw/availability", lambda m: m.text == "online")
            mark = p.mark()
            unit.mode, unit.exception_code = "exception", 11
            await p.expect("modbus/behind_gw/availability", lambda m: m.text == "offline",
                           after=mark)
            mark = p.mark()
            unit.mode = "ok"
            await p.expect("modbus/behind_gw/availability", lambda m: m.text == "online",
                           after=mark)
            state = await p.expect("modbus/behind_gw", lambda m: "h0" in m.json(), after=mark)
            assert (state.json()["h0"], state.json()["h3"]) == (7, 9)
            # Any other exception proves the unit is there: it stays online, the
            # error is reported per datapoint on a read.
            unit.mode, unit.exception_code = "exception", 2
            response = await p.request("behind_gw", {"id": 1, "op": "read",
                                                     "datapoints": ["h0"]})
            assert response["ok"] is False
            assert response["error"]["exception_code"] == 2
            seen = [m.text for m in p.seen if m.topic == "modbus/behind_gw/availability"]
            assert seen[-1] == "online"
    finally:
        await gateway.stop()


async def test_two_spellings_of_one_tcp_host_are_one_client() -> None:
    """The config validator and the registry use one key: `PLC` and `plc` passed
    validation as one port and became two clients (two queues on one gateway)."""
    cfg = validate_config(config(1883, tcp_device("a", "PLC", 502, unit=1),
                                 tcp_device("b", "plc", 502, unit=2)))
    bridge = Bridge(cfg)
    assert list(bridge.registry.clients) == ["plc:502"]
    assert bridge.wrappers["a"] is bridge.wrappers["b"]
    assert bridge.wrappers["a"].registered_devices == {"a", "b"}
    await bridge.registry.close()


async def test_a_hole_between_two_datapoints_of_one_block_is_read_around(
        mosquitto: Mosquitto) -> None:
    """h0 and h3 coalesce into one read of 0..3; the unit refuses 1..2 (exception 2).
    The block is split, both values arrive, and later polls avoid the hole."""
    unit = SimUnit(1, holding={0: 11, 3: 33}, holes=[("holding", 1, 3)])
    gateway = TcpGateway([unit])
    await gateway.start()
    device_config = tcp_device("holey", "127.0.0.1", gateway.port, poll_interval=0)
    try:
        async with running_bridge(config(mosquitto.port, device_config)) as bridge, \
                probe(mosquitto.port) as p:
            await p.expect("modbus/bridge/state", lambda m: m.text == "online")
            response = await p.request("holey", {"id": "first", "op": "read"})
            assert response["values"] == {"h0": 11, "h3": 33}, response
            assert "errors" not in response
            assert unit.requests == 3  # 0..3 refused, then 0 and 3 alone
            device = bridge.runners["holey"].device
            assert device.avoid == {(device.points["h0"].table, 1, 3)}
            response = await p.request("holey", {"id": "again", "op": "read"})
            assert response["values"] == {"h0": 11, "h3": 33}
            assert unit.requests == 5  # the refused span is never asked for again
    finally:
        await gateway.stop()
