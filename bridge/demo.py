"""The hardware-free demo: a simulated RS-485 line with three units and a TCP unit,
a local mosquitto from the repo's mosquitto.conf, the bridge with deploy/demo.yaml,
and `mosquitto_sub` showing the topics live until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .config import load_config
from .service import Bridge
from .simulator import SimBus, SimulatedLine, SimUnit, serve_tcp

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = "/tmp/modbus-bridge-demo"


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


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def broker_config(conf: str, ports: dict[int, int]) -> str:
    """The repo's mosquitto.conf with listener ports moved and its files made absolute
    (the tests use this too, to run the shipped ACLs on free ports)."""
    lines = []
    for line in conf.splitlines():
        words = line.split()
        if words[:1] == ["listener"] and len(words) > 1 and int(words[1]) in ports:
            words[1] = str(ports[int(words[1])])
            line = " ".join(words)
        elif words[:1] in (["password_file"], ["acl_file"]):
            line = f"{words[0]} {REPO / words[1]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def start_broker(port: int) -> subprocess.Popen[bytes]:
    if shutil.which("mosquitto") is None:
        sys.exit("mosquitto is not installed: apt-get install mosquitto mosquitto-clients")
    ports = {1884: port}
    if not _port_free(1883):
        # A system mosquitto (Debian starts one) already holds 1883: move the shipped
        # authenticated listener aside; the demo only uses its loopback listener.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports[1883] = sock.getsockname()[1]
    conf = Path(DEMO_DIR) / "mosquitto.conf"
    conf.write_text(broker_config((REPO / "mosquitto.conf").read_text(), ports))
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
            sys.exit(f"mosquitto did not start (port {port} in use?):\n{err}")
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"mosquitto did not listen on 127.0.0.1:{port}")


async def run_demo(port: int = 1884, duration: float = 0) -> int:
    os.makedirs(DEMO_DIR, exist_ok=True)
    config = load_config(REPO / "deploy" / "demo.yaml",
                         env={"BRIDGE_MQTT__PORT": str(port)})
    broker = start_broker(port)
    line = SimulatedLine(demo_units(), baudrate=19200, directory=DEMO_DIR, name="ttyRS485")
    await line.start()
    inverter = SimUnit(1)
    tcp = await serve_tcp(SimBus([inverter]), "127.0.0.1", 5020)
    watcher = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-v",
                                "-t", "modbus/#"], start_new_session=True)
    bridge = Bridge(config)
    print(f"demo: broker on 127.0.0.1:{port}, RS-485 line {line.path}, TCP unit on :5020\n"
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
        watcher.send_signal(signal.SIGTERM)
        await tcp.shutdown()  # type: ignore[no-untyped-call]
        await line.stop()
        broker.terminate()
        broker.wait(5)
        watcher.wait(5)
    return 0
