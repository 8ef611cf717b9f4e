"""One device cannot fill its port's queue (issue 9, item 7): a flood of reads to one
meter on a shared line gets `busy` past its share, while the other meter's commands
on the same line are still served, through the real broker and simulated line."""

from __future__ import annotations

import json

from bridge.modbus.simulator import SimulatedLine
from tests.broker import Mosquitto, probe
from tests.e2e import make_config, running_bridge


async def test_a_flooding_device_gets_busy_and_its_neighbour_does_not(
        mosquitto: Mosquitto, line: SimulatedLine) -> None:
    config = make_config(mosquitto.port, line.path, bus={"queue_size": 30,
                                                         "command_deadline": 30.0})
    for device in config["devices"]:
        device["poll_interval"] = 0  # the queue holds commands only
    async with running_bridge(config), probe(mosquitto.port) as p:
        await p.expect("modbus/bridge/state", lambda m: m.text == "online")
        # Warm up: both meters and the ghost are known to the port (its share: 30 // 3).
        for device in ("meter1", "meter2", "ghost"):
            await p.request(device, {"op": "read_holding_registers", "address": 0,
                                     "count": 1})
        line.unit(1).mode, line.unit(1).delay = "slow", 0.05
        mark = p.mark()
        for n in range(100):
            await p.publish("modbus/meter1/request", json.dumps(
                {"id": f"m1-{n}", "op": "read_holding_registers", "address": 0, "count": 1}))
        answers = [await p.request("meter2", {"id": f"m2-{n}", "op": "read_holding_registers",
                                              "address": 0, "count": 2}, timeout=20)
                   for n in range(5)]
        assert [a["ok"] for a in answers] == [True] * 5, answers
        assert all(a["registers"] == [200, 201] for a in answers)
        flood = [m.json() for m in p.seen[mark:] if m.topic == "modbus/meter1/response"]
        busy = [a for a in flood if not a["ok"] and a["error"]["code"] == "busy"]
        assert busy, "the flood never hit its share"
        assert "share" in busy[0]["error"]["message"], busy[0]
