"""The CLI as a person runs it: check-config, schema, and `run` with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import yaml

from .broker import probe
from .e2e import make_config

BRIDGE = [sys.executable, "-m", "bridge"]


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BRIDGE, *args], capture_output=True, text=True, timeout=timeout)


def test_schema_is_json_schema():
    out = run_cli("schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert {"mqtt", "devices"} <= set(schema["properties"])


def test_check_config_accepts_the_demo_config():
    out = run_cli("check-config", "deploy/demo.yaml")
    assert out.returncode == 0, out.stderr
    assert "4 devices on 2 ports" in out.stdout


def test_check_config_names_the_bad_field(tmp_path):
    config = make_config(1883, "/dev/ttyUSB0")
    config["devices"][1]["datapoints"][0]["type"] = "float128"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    out = run_cli("check-config", str(path))
    assert out.returncode == 2
    assert "devices[1].datapoints[0].type" in out.stderr


def test_run_with_a_bad_config_exits_before_touching_anything(tmp_path, mosquitto):
    config = make_config(mosquitto.port, "/dev/ttyUSB0")
    config["devices"][0]["unit"] = 300
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    out = run_cli("run", "--config", str(path))
    assert out.returncode == 2
    assert "devices[0].unit" in out.stderr


async def test_sigterm_publishes_offline_and_exits_zero_within_5s(tmp_path, mosquitto, line):
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(make_config(mosquitto.port, line.path)))
    proc = await asyncio.create_subprocess_exec(
        *BRIDGE, "run", "--config", str(path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        async with probe(mosquitto.port) as p:
            await p.expect("modbus/meter1/availability", lambda m: m.text == "online",
                           timeout=20)
            await p.expect("modbus/bridge/state", lambda m: m.text == "online")
            await p.expect("modbus/ghost/availability", lambda m: m.text == "offline")
            mark = p.mark()
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 5)
            elapsed = time.monotonic() - started
            assert code == 0
            assert elapsed < 5
            for device in ("meter1", "meter2", "ghost"):
                await p.expect(f"modbus/{device}/availability", lambda m: m.text == "offline",
                               after=mark)
            await p.expect("modbus/bridge/state", lambda m: m.text == "offline", after=mark)
        _, stderr = await proc.communicate()
        log = stderr.decode()
        assert "went offline: " in log  # ghost: no responder
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
