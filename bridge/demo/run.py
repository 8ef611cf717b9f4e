"""The hardware-free demo: a simulated RS-485 line with three units and a TCP unit,
a private mosquitto on loopback, the bridge with the packaged demo.yaml, and
`mosquitto_sub` showing the topics live until Ctrl-C.

Everything it needs ships inside the package (demo.yaml beside this file), so it
runs from any install. It takes free ports and its own temporary directory, so two
demos (or a demo and the tests) never collide, and its broker config has only an
anonymous loopback listener: no password file for a root-started mosquitto to fail
to read after it drops to its own user.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from bridge.app import Bridge
from bridge.config import Config, validate_config
from bridge.config.yaml_file import read_yaml
from bridge.core.errors import BridgeError
from bridge.modbus.simulator import SimBus, SimulatedLine, SimUnit, serve_tcp, tcp_server_port

DEFAULT_PORT = 1884
LINE_NAME = "ttyRS485"


class DemoError(BridgeError):
    """The demo cannot start (a missing program, a port taken): the CLI prints it."""

    code = "demo_error"


def demo_units() -> list[SimUnit]:
    meter = SimUnit(1)
    heatpump = SimUnit(2, holding={100: 215, 101: 1, 102: 0}, input={0: 352})
    io = SimUnit(3, coil={0: False, 1: True}, discrete={0: True})
    return [meter, heatpump, io]


def animate(units: dict[int, SimUnit], inverter: SimUnit, t: float) -> None:
    """Make the values move like real ones."""
    meter = units[1]
    voltage = 230 + 2 * math.sin(t / 7)
    current = 5 + 3 * math.sin(t / 11)
    meter.set_float32("input", 0, voltage)
    meter.set_float32("input", 2, current)
    meter.set_float32("input", 4, voltage * current)
    meter.set_float32("input", 6, 1234.5 + t * voltage * current / 3.6e6)
    heatpump = units[2]
    target = heatpump.holding.get(100, 215)
    flow = heatpump.input.get(0, 352)
    heatpump.input[0] = flow + (1 if flow < target + 100 else -1)
    power = int(max(0, 3000 * math.sin(t / 30)))
    energy = int(5_000_000 + t * 1000)
    inverter.input.update({0: power >> 16, 1: power & 0xFFFF,
                           2: energy >> 16, 3: energy & 0xFFFF})


def free_port(preferred: int = 0) -> int:
    """`preferred` if it is free on loopback, else any free port."""
    for candidate in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DemoError("no free port on 127.0.0.1")


def demo_config(port: int, line_path: str, tcp_port: int) -> Config:
    """The packaged demo.yaml pointed at this run's broker, line and TCP unit."""
    with resources.as_file(resources.files("bridge.demo").joinpath("demo.yaml")) as path:
        data: dict[str, Any] = read_yaml(path)
    data["mqtt"]["port"] = port
    for device in data["devices"]:
        if "serial" in device:
            device["serial"] = {**device["serial"], "port": line_path}
        else:
            device["tcp"] = {**device["tcp"], "port": tcp_port}
    return validate_config(data)


def broker_conf(port: int) -> str:
    return (f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            "set_tcp_nodelay true\npersistence false\n")


def start_broker(port: int, directory: Path) -> subprocess.Popen[bytes]:
    for program in ("mosquitto", "mosquitto_sub"):
        if shutil.which(program) is None:
            raise DemoError(f"{program} is not installed:"
                            " apt-get install mosquitto mosquitto-clients")
    conf = directory / "mosquitto.conf"
    conf.write_text(broker_conf(port))
    # Own session: Ctrl-C reaches only the bridge, which says offline before the broker
    # is stopped.
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise DemoError(f"mosquitto did not start on 127.0.0.1:{port}:\n{err}")
        time.sleep(0.05)
    proc.kill()
    raise DemoError(f"mosquitto did not listen on 127.0.0.1:{port}")


async def run_demo(port: int = DEFAULT_PORT, duration: float = 0) -> int:
    """Run the demo until Ctrl-C (or `duration` seconds); `port` 0 takes any free one."""
    with tempfile.TemporaryDirectory(prefix="modbus-bridge-demo-") as tmp:
        if port in (0, DEFAULT_PORT):  # the default, or any: a free one (1884 first)
            port = free_port(port)
        broker = start_broker(port, Path(tmp))
        line = SimulatedLine(demo_units(), baudrate=19200, directory=tmp, name=LINE_NAME)
        inverter = SimUnit(1)
        tcp = None
        watcher = None
        try:
            await line.start()
            tcp = await serve_tcp(SimBus([inverter]), "127.0.0.1", 0)
            tcp_port = tcp_server_port(tcp)
            bridge = Bridge(demo_config(port, line.path, tcp_port))
            watcher = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port),
                                        "-v", "-t", "modbus/#"], start_new_session=True)
            print(f"demo: broker on 127.0.0.1:{port}, RS-485 line {line.path},"
                  f" TCP unit on 127.0.0.1:{tcp_port}\n"
                  f"try:  mosquitto_pub -p {port} -t modbus/heatpump/set/setpoint -m 22.5\n"
                  "Ctrl-C to stop", flush=True)

            async def move() -> None:
                started = time.monotonic()
                while True:
                    animate(line.bus.units, inverter, time.monotonic() - started)
                    await asyncio.sleep(0.5)

            mover = asyncio.create_task(move(), name="demo-animate")
            if duration:
                asyncio.get_running_loop().call_later(duration, bridge.stopping.set)
            try:
                await bridge.run()
            finally:
                mover.cancel()
        finally:
            if watcher is not None:
                watcher.send_signal(signal.SIGTERM)
                watcher.wait(5)
            if tcp is not None:
                await tcp.shutdown()  # type: ignore[no-untyped-call]
            await line.stop()
            broker.terminate()
            broker.wait(5)
    return 0
