"""SGr EIDs end to end: a simulated device populated from the EID itself (tests/eid_sim.py,
independent of the bridge's codec), the bridge configured with nothing but `eid:`,
real mosquitto. Every published value must match what the EID says the registers
hold, within its resolution; writes land in the EID's registers or are refused.

- Stiebel Eltron heat pump (ISG), Modbus TCP, addresses counted from 1, enums, a
  bitmap, base1000 energy counters, writable setpoints with limits, its -32768 "not
  available" published as null (the device's no_value).
- ABB B23 meter, Modbus RTU on the simulated RS-485 line (socat pty), 32/64-bit
  scaled counters, overlapping registers in the EID itself.
- WAGO smart meter (RTU), float32 and NUL-padded one-register strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.config.load import Config, validate_config
from bridge.modbus.simulator import SimBus, SimulatedLine
from bridge.sgr.parse import read_eid
from tests.broker import Probe, probe
from tests.conftest import TcpGateway
from tests.e2e import running_bridge
from tests.eid_sim import Populated, matches, populate

EIDS = Path(__file__).parent.parent / "data" / "eids"
STIEBEL = EIDS / "SGr_04_0015_xxxx_StiebelEltron_HeatPump_V1.0.0.xml"
ABB_RTU = EIDS / "SGr_00_0016_dddd_ABB_B23_ModbusRTU_V0.3.xml"
WAGO = EIDS / "SGr_04_0014_0000_WAGO_SmartMeterV0.2.3.xml"
WAGO_BLOCK = EIDS / "SGr_04_0014_0000_WAGO_SmartMeterV0.2.1-Blocktransfer.xml"
ABB_TCP = EIDS / "SGr_00_0016_dddd_ABB_B23_ModbusTCP_V0.4.xml"


def config(broker: int, device: dict[str, Any]) -> Config:
    return validate_config({
        "mqtt": {"host": "127.0.0.1", "port": broker, "client_id": "bridge-eid-test",
                 "reconnect_min": 0.1, "reconnect_max": 1.0},
        "devices": [{"poll_interval": 0.5, "timeout": 1.0, "retries": 1, **device}]})


async def full_state(client: Probe, device: str, names: list[str]) -> dict[str, Any]:
    """The device's state once every datapoint has been read at least once."""
    message = await client.expect(f"modbus/{device}",
                                  lambda m: all(n in m.json() for n in names), timeout=20)
    state: dict[str, Any] = message.json()
    return state


def check_values(state: dict[str, Any], sim: Populated) -> None:
    wrong = {name: (state.get(name), exp.value) for name, exp in sim.expected.items()
             if not matches(state.get(name), exp)}
    assert not wrong, f"published vs expected: {wrong}"


async def test_abb_meter_over_tcp(mosquitto: Any) -> None:
    eid = read_eid(ABB_TCP)
    cfg0 = config(mosquitto.port, {"id": "abb", "tcp": {"host": "127.0.0.1", "port": 1},
                                   "eid": {"file": str(ABB_TCP)}})
    assert cfg0.devices[0].eid is not None
    sim = populate(eid, cfg0.devices[0].eid.refs, unit_id=cfg0.devices[0].unit)
    gateway = TcpGateway([])
    gateway.bus = SimBus([sim.unit])
    await gateway.start()
    try:
        cfg = config(mosquitto.port, {"id": "abb", "tcp": {"host": "127.0.0.1",
                                                           "port": gateway.port},
                                      "eid": {"file": str(ABB_TCP)}})
        names = [p.name for p in cfg.devices[0].points()]
        async with running_bridge(cfg), probe(mosquitto.port) as client:
            check_values(await full_state(client, "abb", names), sim)
            assert len(sim.expected) == 47 and len(sim.shared) == 1, sim.shared
    finally:
        await gateway.stop()


async def test_stiebel_heat_pump_over_tcp(mosquitto: Any) -> None:
    cfg0 = config(mosquitto.port, {"id": "hp", "tcp": {"host": "127.0.0.1", "port": 1},
                                   "eid": {"file": str(STIEBEL)}})
    dev0 = cfg0.devices[0]
    assert dev0.eid is not None
    sim = populate(read_eid(STIEBEL), dev0.eid.refs, unit_id=dev0.unit)
    gateway = TcpGateway([])
    gateway.bus = SimBus([sim.unit])
    await gateway.start()
    try:
        cfg = config(mosquitto.port, {"id": "hp", "tcp": {"host": "127.0.0.1",
                                                          "port": gateway.port},
                                      "eid": {"file": str(STIEBEL)}, "no_value": [-32768]})
        names = [p.name for p in cfg.devices[0].points()]
        async with running_bridge(cfg), probe(mosquitto.port) as client:
            state = await full_state(client, "hp", names)
            check_values(state, sim)
            assert len(sim.expected) == 42 and sim.shared == []
            holding = sim.unit.holding

            # a scaled setpoint (0.1 degC, addresses counted from 1: 1502 -> 1501)
            reply = await client.request("hp", {"op": "write", "values": {
                "HeatCoolCtrl_1_SupplyWaterTempSetpointComfort": 21.45}})
            assert reply["ok"], reply
            assert holding[1501] == 215  # 21.45 rounds half up, not down to 214
            assert reply["values"] == {"HeatCoolCtrl_1_SupplyWaterTempSetpointComfort": 21.5}

            # enums: a literal, and ordinal 0 (the SGr handler dropped it as "no value")
            reply = await client.request("hp", {"op": "write", "values": {
                "HeatPumpBase_HPOpModeCmd": "STI_WP_ECO_OP",
                "SG_ReadyStates_SGReadyOpModeCmd": "HP_LOCKED"}})
            assert reply["ok"], reply
            assert holding[1500] == 4 and (holding[4001], holding[4002]) == (1, 0)
            reply = await client.request("hp", {"op": "write", "values": {
                "HeatPumpBase_HPOpModeCmd": "STI_WP_EMERG_OP"}})
            assert holding[1500] == 0
            assert reply["values"] == {"HeatPumpBase_HPOpModeCmd": "STI_WP_EMERG_OP"}

            reply = await client.request("hp", {"op": "write", "values": {
                "SG_ReadyStates_SGReadyEnabled": True}})
            assert reply["ok"] and holding[4000] == 1

            # refused: a read-only point, and a setpoint outside the EID's 5..30
            before = dict(holding)
            reply = await client.request("hp", {"op": "write", "values": {
                "HeatPumpBase_OutsideAirTemp": 20}})
            assert reply["error"]["code"] == "not_writable"
            reply = await client.request("hp", {"op": "write", "values": {
                "HeatCoolCtrl_2_SupplyWaterTempSetpointEco": 30.5}})
            assert reply["error"]["code"] == "out_of_range"
            assert reply["error"]["field"] == "values.HeatCoolCtrl_2_SupplyWaterTempSetpointEco"
            assert holding == before

            # The ISG's "not available" (-32768, its EID's programmer hint): null, not
            # -3276.8 degC, once the device's no_value names it.
            outside = {p.name: p for p in cfg.devices[0].points()}["HeatPumpBase_OutsideAirTemp"]
            assert outside.type.value == "int16" and outside.no_value == {-32768}
            getattr(sim.unit, outside.table.value)[outside.address] = 0x8000
            mark = client.mark()
            await client.expect("modbus/hp/HeatPumpBase_OutsideAirTemp",
                                lambda m: m.text == "null", after=mark, timeout=10)
            state = (await client.expect("modbus/hp", after=mark, timeout=10)).json()
            assert state["HeatPumpBase_OutsideAirTemp"] is None
    finally:
        await gateway.stop()


@pytest.mark.parametrize(("eid", "count", "shared"), [
    # The ABB EID itself declares overlapping registers (the totals share the first
    # registers of other counters); those get the value the registers really hold.
    (ABB_RTU, 41, 2),
    (WAGO, 47, 2),
    (WAGO_BLOCK, 46, 1),
])
async def test_rtu_meter_on_the_serial_line(mosquitto: Any, eid: Path, count: int,
                                            shared: int) -> None:
    async with SimulatedLine([], baudrate=19200) as line:
        device = {"id": "meter", "serial": {"port": line.path, "parity": "N",
                                            "baudrate": 19200},
                  "eid": {"file": str(eid)}}
        cfg = config(mosquitto.port, device)
        dev = cfg.devices[0]
        assert dev.eid is not None
        sim = populate(read_eid(eid), dev.eid.refs, unit_id=dev.unit)
        line.bus.add(sim.unit)
        names = [p.name for p in dev.points()]
        async with running_bridge(cfg), probe(mosquitto.port) as client:
            state = await full_state(client, "meter", names)
            check_values(state, sim)
            assert len(sim.expected) == count and len(sim.shared) == shared, sim.shared
            info = (await client.expect("modbus/bridge/info")).json()
            assert info["eid"]["meter"]["datapoints"] == count
            assert len(info["eid"]["meter"]["skipped"]) == (1 if eid == WAGO_BLOCK else 0)
            reply = await client.request("meter", {"op": "write", "values": {names[0]: 1}})
            assert reply["error"]["code"] == "not_writable"
