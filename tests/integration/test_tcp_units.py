"""Modbus TCP devices on unit 0 and 255 end to end (many TCP devices answer only
there); RTU over TCP keeps the serial line's 1..247."""

from __future__ import annotations

import subprocess
import sys

import yaml

from tests.broker import probe
from tests.conftest import TcpGateway, meter_unit
from tests.e2e import running_bridge


def tcp_device(dev_id: str, port: int, unit: int, framer: str = "socket") -> dict[str, object]:
    return {"id": dev_id, "tcp": {"host": "127.0.0.1", "port": port, "framer": framer},
            "unit": unit, "timeout": 1.0, "poll_interval": 0.5,
            "datapoints": [{"name": "h0", "table": "holding", "address": 0, "type": "uint16"},
                           {"name": "h3", "table": "holding", "address": 3, "type": "uint16",
                            "writable": True}]}


async def test_units_0_and_255_over_modbus_tcp(mosquitto):
    gw = TcpGateway([meter_unit(0), meter_unit(255)])
    await gw.start()
    try:
        config = {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port,
                           "reconnect_min": 0.1, "reconnect_max": 1.0},
                  "devices": [tcp_device("inverter", gw.port, 0),
                              tcp_device("wallbox", gw.port, 255)]}
        async with running_bridge(config), probe(mosquitto.port) as p:
            for dev in ("inverter", "wallbox"):
                await p.expect(f"modbus/{dev}/availability", lambda m: m.text == "online")
            assert (await p.expect("modbus/inverter", lambda m: "h0" in m.json())).json()[
                "h0"] == 0
            assert (await p.expect("modbus/wallbox", lambda m: "h0" in m.json())).json()[
                "h0"] == 25500
            answer = await p.request("wallbox", {"op": "write", "values": {"h3": 7}})
            assert answer["ok"] is True and answer["values"] == {"h3": 7}
            assert gw.bus.units[255].holding[3] == 7 and gw.bus.units[0].holding[3] == 3
    finally:
        await gw.stop()


def test_rtu_over_tcp_refuses_unit_0_at_load(tmp_path):
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"devices": [tcp_device("gw", 502, 0, framer="rtu")]}))
    out = subprocess.run([sys.executable, "-m", "bridge", "check-config", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "devices[0].unit: must be 1..247 on a serial line or RTU over TCP" in out.stderr
