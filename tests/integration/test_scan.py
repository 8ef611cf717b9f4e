"""Bus scan on the simulated line: `bridge scan` as a process, and `op: scan` over MQTT
through a running bridge's bus. Units present (data), answering exceptions, silent,
and absent; the healthy units' polling and commands keep going during a scan."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time

import pytest

from bridge.modbus.simulator import SimulatedLine, SimUnit
from tests.broker import probe
from tests.conftest import BAUD, TcpGateway, meter_unit
from tests.e2e import make_config, running_bridge


def scan_units() -> list[SimUnit]:
    return [meter_unit(1), meter_unit(2),
            SimUnit(5, mode="exception", exception_code=2),   # no register 0: still there
            SimUnit(6, mode="exception", exception_code=1),   # no holding registers
            SimUnit(7, mode="silent")]                        # dead: never answers


@pytest.fixture
async def scan_line():
    async with SimulatedLine(scan_units(), baudrate=BAUD) as sim:
        yield sim


async def run_cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "scan", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_scan_reports_data_exceptions_and_silence(scan_line):
    started = time.monotonic()
    rc, out, err = await run_cli("--serial", scan_line.path, "--baudrate", str(BAUD),
                                 "--parity", "N", "--units", "1-8", "--timeout", "0.1")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:4] == ["  1  answers with data", "  2  answers with data",
                         "  5  answers with exception 02", "  6  answers with exception 01"]
    assert lines[4].startswith(f"4 units answered of 8 probed on {scan_line.path} in ")
    assert "\r" not in out + err and "[#" not in err  # not a terminal: no progress bar
    assert scan_line.unit(7).requests == 1  # the silent unit was asked exactly once
    assert time.monotonic() - started < 30


async def test_cli_scan_draws_a_progress_bar_on_a_terminal(scan_line):
    import os
    import pty
    master, slave = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "scan", "--serial", scan_line.path,
            "--baudrate", str(BAUD), "--parity", "N", "--units", "1-3", "--timeout", "0.1",
            stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        terminal = b""
        with contextlib.suppress(OSError):  # EIO once the child closed its end
            while chunk := os.read(master, 4096):
                terminal += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"\r[##########....................] 1/3  unit   1  found 1" in terminal
    assert b"3/3  unit   3  found 2" in terminal and terminal.endswith(b"\r\033[K")
    assert out.decode().splitlines()[-1].startswith("2 units answered of 3 probed")


async def test_cli_scan_json_report(scan_line):
    rc, out, _ = await run_cli("--serial", scan_line.path, "--baudrate", str(BAUD),
                               "--parity", "N", "--units", "5,7,1", "--timeout", "0.1",
                               "--json")
    assert rc == 0
    report = json.loads(out)
    assert report["probed"] == 3 and report["timeout"] == 0.1
    assert [(p["unit"], p["status"], p.get("exception_code"), p.get("registers"))
            for p in report["present"]] == [(1, "data", None, [100]),
                                            (5, "exception", 2, None)]


async def test_cli_scan_over_modbus_tcp_reaches_unit_0_and_255():
    gw = TcpGateway([meter_unit(0), meter_unit(255)])
    await gw.start()
    try:
        rc, out, err = await run_cli("--tcp", f"127.0.0.1:{gw.port}", "--units", "0-2,254-255",
                                     "--timeout", "0.1")
        assert rc == 0, err
        assert out.splitlines()[:2] == ["  0  answers with data", "255  answers with data"]
    finally:
        await gw.stop()


@pytest.mark.parametrize(("args", "message"), [
    (["--units", "0-5"], "unit 0 is outside 1..247"),
    (["--units", "5-1"], "runs backwards"),
    (["--units", "x"], "'x' is not a unit id"),
    (["--timeout", "0"], "--timeout"),
])
async def test_cli_scan_refuses_bad_arguments(args, message):
    rc, _, err = await run_cli("--serial", "/dev/null", *args)
    assert rc == 2 and message in err


async def test_cli_scan_of_a_missing_port_says_why(tmp_path):
    rc, out, err = await run_cli("--serial", str(tmp_path / "ttyUSB9"), "--units", "1")
    assert rc == 1 and out == ""
    assert "no such device" in err


async def test_cli_scan_finding_nobody_exits_1(scan_line):
    rc, out, _ = await run_cli("--serial", scan_line.path, "--baudrate", str(BAUD),
                               "--parity", "N", "--units", "7-9", "--timeout", "0.05")
    assert rc == 1 and out.startswith("0 units answered of 3 probed")


async def test_a_unit_slower_than_the_timeout_never_answers_for_the_next_id():
    """No line silence after a silent id (that halves a scan): a late answer carries its
    own unit id, which pymodbus refuses as the next probe's answer."""
    from bridge.core.transport import SerialLine
    from bridge.modbus.scan import scan_transport
    slow = meter_unit(3)
    slow.mode, slow.delay = "slow", 0.15
    async with SimulatedLine([slow, meter_unit(4), meter_unit(6)], baudrate=BAUD) as sim:
        for _ in range(3):
            report = await scan_transport(SerialLine(sim.path, BAUD, "N"), [3, 4, 5, 6],
                                          timeout=0.1)
            found = {f.unit: (f.status, f.registers) for f in report.present}
            assert found == {4: ("data", (400,)), 6: ("data", (600,))}, report.to_wire()


# -- over MQTT, through the running bridge ---------------------------------------------


@pytest.fixture
async def bridge(mosquitto, scan_line):
    async with running_bridge(make_config(mosquitto.port, scan_line.path)) as running:
        yield running


@pytest.fixture
async def client(mosquitto, bridge):
    async with probe(mosquitto.port) as p:
        await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        yield p


async def bridge_request(client, body, timeout: float = 60.0):
    mark = client.mark()
    await client.publish("modbus/bridge/request", json.dumps(body))
    return (await client.expect("modbus/bridge/response",
                                lambda m: m.json().get("id") == body.get("id"),
                                timeout=timeout, after=mark)).json()


async def test_scan_over_mqtt_uses_the_ports_bus(client, scan_line, bridge):
    answer = await bridge_request(client, {"id": "s1", "op": "scan", "port": scan_line.path,
                                           "units": "1-8", "timeout": 0.1})
    assert answer["ok"] is True, answer
    assert answer["op"] == "scan" and "device" not in answer
    assert answer["probed"] == 8
    present = {p["unit"]: (p["status"], p.get("exception_code")) for p in answer["present"]}
    assert present == {1: ("data", None), 2: ("data", None), 5: ("exception", 2),
                       6: ("exception", 1)}
    # unit 3 is the configured "ghost": absent, or skipped while the bus backs off from it
    assert set(answer["skipped"]) <= {3}
    assert answer["ts"].endswith("Z") and answer["seconds"] > 0
    # probed ids leave no bookkeeping behind: the configured units keep their queue shares
    (wrapper,) = bridge.registry.clients.values()
    assert set(wrapper.bus.units) == {1, 2, 3}


async def test_polling_and_commands_go_on_during_a_scan(client, scan_line):
    """A healthy unit waits for at most the probe in front of it, never for the scan."""
    mark = client.mark()
    scan = asyncio.create_task(bridge_request(client, {
        "id": "s2", "op": "scan", "port": scan_line.path, "units": "8-47", "timeout": 0.1}))
    await client.expect("modbus/meter1", after=client.mark())
    command_ms = []
    while not scan.done():
        response = await client.request("meter1", {"op": "read_holding_registers",
                                                   "address": 0, "count": 1})
        assert response["ok"] is True and response["registers"] == [100], response["error"]
        command_ms.append(response["duration_ms"])
        await asyncio.wait({scan}, timeout=0.5)
    answer = scan.result()
    assert answer["ok"] is True and answer["probed"] == 40 and answer["present"] == []
    assert answer["seconds"] > 3  # 40 silent units: long enough to interleave
    # commands go first: at most the probe on the wire and its silence (2 x 0.1 s)
    assert len(command_ms) >= 3 and max(command_ms) < 1000, command_ms
    # polls (every 0.5 s) went on: no gap near the scan's length between two states
    stamps = [m for m in client.seen[mark:] if m.topic == "modbus/meter1"]
    times = [m.json()["last_seen"] for m in stamps]
    assert len(times) >= answer["seconds"] / 0.5 / 2, times


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"op": "scan", "port": "/dev/ttyUSB7"}, "invalid_request", "port"),
    ({"op": "scan"}, "invalid_request", "port"),
    ({"op": "scan", "port": "PORT", "units": "0-3"}, "invalid_request", "units"),
    ({"op": "scan", "port": "PORT", "units": [1, "x"]}, "invalid_request", "units"),
    ({"op": "scan", "port": "PORT", "timeout": 60}, "invalid_request", "timeout"),
    ({"op": "scan", "port": "PORT", "speed": 1}, "invalid_request", "speed"),
    ({"op": "reboot"}, "invalid_request", "op"),
])
async def test_bad_scan_requests_are_typed_errors(client, scan_line, body, code, field):
    if body.get("port") == "PORT":
        body["port"] = scan_line.path
    answer = await bridge_request(client, {"id": "bad", **body}, timeout=10)
    assert answer["ok"] is False and answer["id"] == "bad"
    assert answer["error"]["code"] == code and answer["error"].get("field") == field, answer


async def test_not_json_on_the_bridge_request_topic(client):
    mark = client.mark()
    await client.publish("modbus/bridge/request", b"{nope")
    answer = (await client.expect("modbus/bridge/response", after=mark)).json()
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_json"


async def test_a_second_scan_of_the_same_port_is_busy(client, scan_line):
    first = asyncio.create_task(bridge_request(client, {
        "id": "a", "op": "scan", "port": scan_line.path, "units": "10-30", "timeout": 0.1}))
    await asyncio.sleep(0)  # queue the first publish before the second
    second = await bridge_request(client, {"id": "b", "op": "scan", "port": scan_line.path,
                                           "units": "1"}, timeout=10)
    assert second["ok"] is False and second["error"]["code"] == "busy"
    assert (await first)["ok"] is True
