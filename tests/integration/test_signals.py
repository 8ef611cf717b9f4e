"""Signals to the bridge as a process (issue 9, item 9): SIGHUP stops it like SIGTERM
(offline published, exit 0), and a command on the wire when it stops gets its one
answer, port_unavailable "bridge stopping"."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
import yaml

from bridge.modbus.simulator import SimulatedLine
from tests.broker import Mosquitto, probe
from tests.e2e import make_config
from tests.integration.test_cli import BRIDGE


async def start(tmp_path: Path, config: dict[str, object]) -> asyncio.subprocess.Process:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return await asyncio.create_subprocess_exec(
        *BRIDGE, "run", "--config", str(path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
async def test_signal_answers_the_command_in_flight_and_stops_cleanly(
        tmp_path: Path, mosquitto: Mosquitto, line: SimulatedLine, sig: signal.Signals) -> None:
    config = make_config(mosquitto.port, line.path)
    config["devices"][0].update(timeout=4.0, poll_interval=0)
    proc = await start(tmp_path, config)
    try:
        async with probe(mosquitto.port) as p:
            await p.expect("modbus/meter2/availability", lambda m: m.text == "online",
                           timeout=20)
            unit = line.unit(1)
            unit.mode, unit.delay = "slow", 3.0  # the write is on the wire when we signal
            seen = unit.requests
            mark = p.mark()
            await p.publish("modbus/meter1/request", '{"id": "w1", "op": "write_register", '
                            '"address": 4, "value": 7}')
            deadline = time.monotonic() + 10
            while unit.requests == seen and time.monotonic() < deadline:
                await p.wait_new(0.05)
            assert unit.requests > seen, "the write never reached the unit"
            started = time.monotonic()
            proc.send_signal(sig)
            answer = (await p.expect("modbus/meter1/response",
                                     lambda m: m.json().get("id") == "w1", after=mark,
                                     timeout=5)).json()
            assert answer["ok"] is False, answer
            assert answer["error"]["code"] == "port_unavailable", answer
            assert answer["error"]["message"] == "bridge stopping", answer
            assert await asyncio.wait_for(proc.wait(), 5) == 0
            assert time.monotonic() - started < 5
            for device in ("meter1", "meter2", "ghost"):
                await p.expect(f"modbus/{device}/availability", lambda m: m.text == "offline",
                               after=mark)
            await p.expect("modbus/bridge/state", lambda m: m.text == "offline", after=mark)
            answers = [m for m in p.seen[mark:] if m.topic == "modbus/meter1/response"
                       and m.json().get("id") == "w1"]
            assert len(answers) == 1, answers
        _, stderr = await proc.communicate()
        assert f"{sig.name} received" in stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
