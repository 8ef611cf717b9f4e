"""The polling fleet: 10 pymodbus TCP gateways x 10 units x 50 uint16 datapoints,
polled every second, against the bridge as its own process (and the peer
spicierModbus2mqtt, one process per gateway, when its source is given).

Per run: start-up time (process spawn -> the 100th `online`), then after a warm-up a
window in which the bridge's CPU time, its RSS, and the messages it published (counted
by mosquitto_sub) are measured.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    BridgeProcess,
    broker,
    counting,
    cpu_seconds,
    gateways,
    rss_mb,
    stop_all,
)

GATEWAYS, UNITS, POINTS = 10, 10, 50


@dataclass
class FleetResult:
    name: str
    expected_per_s: float
    published_per_s: float
    cpu_percent: float  # of one core
    rss_mb: float
    startup_s: float | None
    # The least-polled device's JSON states per second, between its first and its last
    # in the window: a count over the window itself was 9 or 11 for a device polled on
    # time whenever its polls fell at the window's edges.
    slowest_device_polls_per_s: float | None

    @property
    def kept_up(self) -> float:
        return self.published_per_s / self.expected_per_s if self.expected_per_s else 1.0

    @property
    def cpu_us_per_message(self) -> float:
        return self.cpu_percent * 1e4 / self.published_per_s if self.published_per_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kept_up": self.kept_up,
                "cpu_us_per_message": self.cpu_us_per_message}


def fleet_config(broker_port: int, ports: list[int], *, qos: int = 1,
                 per_point: bool = True) -> dict[str, Any]:
    devices = []
    for g, port in enumerate(ports):
        for unit in range(1, UNITS + 1):
            devices.append({
                "id": f"g{g}u{unit}", "tcp": {"host": "127.0.0.1", "port": port},
                "unit": unit, "poll_interval": 1.0, "timeout": 1.0,
                "datapoints": [{"name": f"r{a}", "table": "holding", "address": a,
                                "type": "uint16"} for a in range(POINTS)]})
    return {"mqtt": {"host": "127.0.0.1", "port": broker_port, "client_id": "bench-bridge",
                     "qos": qos, "per_datapoint_topics": per_point},
            "devices": devices}


async def run_fleet(name: str, *, src: Path = REPO, changing: bool = True, qos: int = 1,
                    per_point: bool = True, warmup: float = 4.0, window: float = 10.0
                    ) -> FleetResult:
    devices = GATEWAYS * UNITS
    with broker() as port:
        servers = await gateways(GATEWAYS, UNITS, changing=changing)
        try:
            config = fleet_config(port, [gw.port for gw in servers], qos=qos, per_point=per_point)
            states = [f"modbus/g{g}u{u}" for g in range(GATEWAYS) for u in range(1, UNITS + 1)]
            async with counting(port, "modbus/#", timed=states) as counter:
                bridge = BridgeProcess(config, src)
                await bridge.start()
                try:
                    startup = await _wait_online(counter, bridge, devices)
                    await asyncio.sleep(warmup)
                    cpu0, n0, t0 = cpu_seconds(bridge.pid), counter.total, time.perf_counter()
                    await asyncio.sleep(window)
                    cpu1, n1, t1 = cpu_seconds(bridge.pid), counter.total, time.perf_counter()
                    rss = rss_mb(bridge.pid)
                finally:
                    await bridge.stop()
        finally:
            await stop_all(servers)
    span = t1 - t0
    per_poll = (1 + POINTS if per_point else 1) if changing else 1
    return FleetResult(name, devices * per_poll, (n1 - n0) / span,
                       (cpu1 - cpu0) / span * 100, rss, startup,
                       min(_rate([t for t in counter.arrivals[topic] if t0 <= t <= t1])
                           for topic in states))


def _rate(times: list[float]) -> float:
    """Events per second from the first to the last of `times` (0 for fewer than two)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and \
        times[-1] > times[0] else 0.0


async def _wait_online(counter: Any, bridge: BridgeProcess, devices: int,
                       timeout: float = 60.0) -> float | None:
    end = time.perf_counter() + timeout
    while len(counter.online_at) < devices:
        if time.perf_counter() > end:
            return None
        await asyncio.sleep(0.01)
    return max(counter.online_at.values()) - bridge.started


# -- the peer ------------------------------------------------------------------------


def peer_source(path: str) -> Path:
    """A directory holding the peer's `modbus2mqtt` package: `path` itself when it is a
    checkout, else exported from a git repository at `path` (e.g. a bare mirror)."""
    source = Path(path)
    if (source / "modbus2mqtt" / "modbus2mqtt.py").exists():
        return source
    target = Path(tempfile.mkdtemp(prefix="peer-"))
    archive = subprocess.run(["git", "-C", str(source), "archive", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def _peer_csv(unit_ids: range) -> str:
    lines = ['"type","topic","col2","col3","col4","col5","col6"']
    for g_unit in unit_ids:
        lines.append(f"poll,u{g_unit},{g_unit},0,{POINTS},holding_register,1")
        lines.extend(f"ref,r{a},{a},r" for a in range(POINTS))
    return "\n".join(lines) + "\n"


async def run_peer(peer: Path, warmup: float = 4.0, window: float = 10.0) -> FleetResult:
    """spicierModbus2mqtt as its README runs it: one process per gateway, one topic per
    register (QoS 0, retained), publishing what changed."""
    with broker() as port, tempfile.TemporaryDirectory() as tmp:
        servers = await gateways(GATEWAYS, UNITS, changing=True)
        procs: list[asyncio.subprocess.Process] = []
        try:
            async with counting(port, "peer/#") as counter:
                for g, gw in enumerate(servers):
                    csv = Path(tmp) / f"g{g}.csv"
                    csv.write_text(_peer_csv(range(1, UNITS + 1)))
                    procs.append(await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "modbus2mqtt", "--tcp", "127.0.0.1",
                        "--tcp-port", str(gw.port), "--config", str(csv), "--mqtt-host",
                        "127.0.0.1", "--mqtt-port", str(port), "--mqtt-topic", f"peer/g{g}/",
                        "--verbosity", "0", cwd=tmp,
                        env={**os.environ, "PYTHONPATH": str(peer)},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                await asyncio.sleep(warmup)
                cpu0 = sum(cpu_seconds(p.pid) for p in procs)
                n0, t0 = counter.total, time.perf_counter()
                await asyncio.sleep(window)
                cpu1 = sum(cpu_seconds(p.pid) for p in procs)
                n1, t1 = counter.total, time.perf_counter()
                rss = sum(rss_mb(p.pid) for p in procs)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            for proc in procs:
                await proc.wait()
            await stop_all(servers)
    span = t1 - t0
    return FleetResult("peer spicierModbus2mqtt, 10 processes, QoS 0",
                       GATEWAYS * UNITS * POINTS, (n1 - n0) / span,
                       (cpu1 - cpu0) / span * 100, rss, None, None)
