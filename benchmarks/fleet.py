"""The polling fleet: 10 pymodbus TCP gateways x 10 units x 50 uint16 datapoints,
polled every second, against the bridge as its own process (and the peer
spicierModbus2mqtt, one process per gateway, when its source is given).

Per run: start-up time (process spawn -> the 100th `online`), then after a warm-up a
window in which the bridge's CPU time, its RSS, and the messages it published (counted
by mosquitto_sub) are measured.
"""

from __future__ import annotations

import asyncio
import bisect
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
    MessageCounter,
    broker,
    counting,
    cpu_seconds,
    gateways,
    rss_mb,
    stop_all,
)

GATEWAYS, UNITS, POINTS = 10, 10, 50
# After the window, for this process to read what mosquitto_sub received within it.
_CATCH_UP = 0.5


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
            async with counting(port, "modbus/#") as counter:
                bridge = BridgeProcess(config, src)
                await bridge.start()
                try:
                    startup = await _wait_online(counter, bridge, devices)
                    await asyncio.sleep(warmup)
                    cpu0, t0 = cpu_seconds(bridge.pid), time.perf_counter()
                    await asyncio.sleep(window)
                    cpu1, t1 = cpu_seconds(bridge.pid), time.perf_counter()
                    rss = rss_mb(bridge.pid)
                    await asyncio.sleep(_CATCH_UP)
                finally:
                    await bridge.stop()
        finally:
            await stop_all(servers)
    span = t1 - t0
    per_poll = (1 + POINTS if per_point else 1) if changing else 1
    published, slowest = _per_device(counter, states, t0, t1)
    return FleetResult(name, devices * per_poll, published, (cpu1 - cpu0) / span * 100,
                       rss, startup, slowest)


def _per_device(counter: MessageCounter, states: list[str], t0: float, t1: float
                ) -> tuple[float, float]:
    """Messages published per second, summed over the devices, and the slowest device's
    polls per second; each device measured from its first to its last JSON state in
    the window.

    The devices start together and poll in step, so their polls come as one burst a
    second: a count over the window itself moved by 1 to 2 % (98.2 to 100.9 % of the
    expected messages in runs that kept up) with where its edges cut a burst. A poll
    publishes its state and then its changed datapoints, so from just after a
    device's first state to its last one come exactly its polls' messages."""
    polls: dict[str, list[float]] = {topic: [] for topic in states}  # its JSON states
    values: dict[str, list[float]] = {topic: [] for topic in states}  # and the rest
    for at, topic in zip(counter.received, counter.topics, strict=True):
        base, _, rest = topic.partition("/")
        device, _, point = rest.partition("/")
        state = f"{base}/{device}"
        if not t0 <= at <= t1 or state not in polls or point in ("availability", "response"):
            continue
        (values[state] if point else polls[state]).append(at)
    published, slowest = 0.0, float("inf")
    for state, stamps in polls.items():
        if len(stamps) < 2 or stamps[-1] <= stamps[0]:
            return 0.0, 0.0  # a device that did not poll twice in the window
        first, last = stamps[0], stamps[-1]
        span = last - first
        points = values[state]
        messages = len(stamps) - 1 + \
            bisect.bisect_left(points, last) - bisect.bisect_right(points, first)
        published += messages / span
        slowest = min(slowest, (len(stamps) - 1) / span)
    return published, slowest


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
                t0 = time.perf_counter()
                await asyncio.sleep(window)
                cpu1 = sum(cpu_seconds(p.pid) for p in procs)
                t1 = time.perf_counter()
                rss = sum(rss_mb(p.pid) for p in procs)
                await asyncio.sleep(_CATCH_UP)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            for proc in procs:
                await proc.wait()
            await stop_all(servers)
    span = t1 - t0
    return FleetResult("peer spicierModbus2mqtt, 10 processes, QoS 0",
                       GATEWAYS * UNITS * POINTS, counter.between(t0, t1) / span,
                       (cpu1 - cpu0) / span * 100, rss, None, None)
