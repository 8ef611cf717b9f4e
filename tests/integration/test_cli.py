"""The CLI as a person runs it: check-config, schema, and `run` with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import yaml

from tests.broker import probe
from tests.e2e import make_config

BRIDGE = [sys.executable, "-m", "bridge"]


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BRIDGE, *args], capture_output=True, text=True, timeout=timeout)


def test_schema_is_json_schema():
    out = run_cli("schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert {"mqtt", "devices"} <= set(schema["properties"])


def test_check_config_accepts_the_demo_config():
    out = run_cli("check-config", "bridge/demo/demo.yaml")
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


async def drain(proc: asyncio.subprocess.Process, output: list[str]) -> None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        output.append(line.decode(errors="replace"))


async def test_two_demos_run_at_once_and_take_commands(tmp_path):
    """`bridge demo` as the README drives it, twice at once from a private (mode 700)
    directory: each takes free ports and its own temporary directory, starts its own
    broker, simulated line and TCP unit; a setpoint written over MQTT is read back;
    Ctrl-C exits 0. On failure the demos' own output is shown."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    procs = [await asyncio.create_subprocess_exec(
        *BRIDGE, "demo", "--port", "0", "--duration", "40", cwd=private,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT) for _ in range(2)]
    outputs: list[list[str]] = [[], []]
    drains: list[asyncio.Task[None]] = []
    try:
        ports = []
        for proc, output in zip(procs, outputs, strict=True):
            assert proc.stdout is not None
            async with asyncio.timeout(20):  # until the demo says where its broker is
                while not output or not output[-1].startswith("demo: broker on"):
                    line = (await proc.stdout.readline()).decode()
                    assert line, f"demo exited early:\n{''.join(output)}"
                    output.append(line)
            ports.append(int(output[-1].split("127.0.0.1:")[1].split(",")[0]))
        # Keep reading: the topics the demo prints must never fill the pipe and stall it.
        drains.extend(asyncio.create_task(drain(proc, output))
                      for proc, output in zip(procs, outputs, strict=True))
        assert ports[0] != ports[1]
        for port in ports:
            async with probe(port) as p:
                for device in ("meter1", "heatpump", "io", "inverter"):
                    await p.expect(f"modbus/{device}/availability",
                                   lambda m: m.text == "online")
                meter = (await p.expect("modbus/meter1",
                                        lambda m: "voltage_l1" in m.json())).json()
                assert 225 < meter["voltage_l1"] < 235
                mark = p.mark()
                await p.publish("modbus/heatpump/set/setpoint", "22.5")
                reply = await p.expect("modbus/heatpump/response", after=mark)
                assert reply.json()["values"] == {"setpoint": 22.5}
                await p.expect("modbus/heatpump", lambda m: m.json()["setpoint"] == 22.5,
                               after=mark)
        for proc in procs:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
        for proc in procs:
            assert await asyncio.wait_for(proc.wait(), 10) == 0
    except BaseException:
        for proc, output in zip(procs, outputs, strict=True):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            print(f"--- demo output ---\n{''.join(output)[-5000:]}")
        raise
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        await asyncio.gather(*drains, return_exceptions=True)


def test_the_wheel_carries_the_demo(tmp_path):
    """`bridge demo` must work from a plain `pip install`, not only from a checkout:
    its config ships inside the package."""
    import zipfile
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(tmp_path), str(repo)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bridge/demo/demo.yaml" in names
    assert "bridge/demo/run.py" in names
