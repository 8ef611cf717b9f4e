"""Pieces the performance benchmarks share: a fresh mosquitto, the bridge as its own
process with its CPU time and RSS read from /proc, a message counter that is not
Python (mosquitto_sub), and simulated units whose values change on every read.

CPU is the bridge process's own user + system time over a window (/proc/<pid>/stat),
so other load on the machine slows the run but does not inflate the figure.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bridge.modbus.simulator import SimBus, SimUnit, serve_tcp, tcp_server_port

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def broker(extra: str = "") -> Iterator[int]:
    """A fresh mosquitto on loopback (tests/broker.py: no drop limits); yields its port."""
    from tests.broker import Mosquitto

    with tempfile.TemporaryDirectory() as tmp:
        mosquitto = Mosquitto(Path(tmp), extra=extra)
        mosquitto.start()
        try:
            yield mosquitto.port
        finally:
            mosquitto.stop()


class ChangingUnit(SimUnit):
    """A unit whose every register has a new value at every read (`changing`), or a
    fixed one."""

    changing: bool = True

    def get(self, table: str, address: int, count: int) -> Any:
        if not self.changing:
            return super().get(table, address, count)
        base = self.requests * 7
        return [(base + a) & 0xFFFF for a in range(address, address + count)]


@dataclass
class Gateway:
    server: Any
    port: int
    bus: SimBus


async def gateways(count: int, units: int, *, changing: bool, framer: str = "socket"
                   ) -> list[Gateway]:
    """`count` pymodbus TCP servers on loopback, each with units 1..`units`."""
    servers = []
    for _ in range(count):
        sims = []
        for unit_id in range(1, units + 1):
            unit = ChangingUnit(unit_id, holding={a: unit_id * 100 + a for a in range(100)})
            unit.changing = changing
            sims.append(unit)
        bus = SimBus(sims)
        server = await serve_tcp(bus, framer=framer)
        servers.append(Gateway(server, tcp_server_port(server), bus))
    return servers


@contextlib.asynccontextmanager
async def helper_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m benchmarks.<args>` as its own process (a simulator, the wire emulator),
    with pipes to talk to it; terminated on the way out."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def read_port(proc: asyncio.subprocess.Process) -> int:
    """The first line a helper prints: the TCP port it listens on."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    return int(line.decode())


async def stop_all(servers: Sequence[Gateway]) -> None:
    for gateway in servers:
        await gateway.server.shutdown()


class BridgeProcess:
    """`python -m bridge run` from source tree `src` (this repo, or a baseline checkout)."""

    # Run under another program (valgrind, in benchmarks/instructions.py), and how long
    # the bridge may take to stop.
    prefix: tuple[str, ...] = ()
    stop_timeout = 10.0

    def __init__(self, config: dict[str, Any], src: Path = REPO) -> None:
        self.config = config
        self.src = src
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self._file = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)  # noqa: SIM115

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        yaml.safe_dump(self.config, self._file, sort_keys=False)
        self._file.close()
        env = {**os.environ, "PYTHONPATH": str(self.src)}
        self.started = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *self.prefix, sys.executable, "-m", "bridge", "--log-level", "WARNING", "run",
            "--config", self._file.name, cwd=self.src, env=env)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), self.stop_timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file.name)


@contextlib.asynccontextmanager
async def bridge_process(config: dict[str, Any], src: Path = REPO
                         ) -> AsyncIterator[BridgeProcess]:
    proc = BridgeProcess(config, src)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


class MessageCounter:
    """Counts messages with mosquitto_sub (C, so the counting costs this benchmark
    little), remembers when each availability turned online, and when each message
    came, with its topic.

    Every time is the moment mosquitto_sub received the message (its `%U`), on
    `time.perf_counter()`'s clock: this process reads the pipe behind it, by a lag
    that varies with the machine's load, so a time of its own is not when the
    message came."""

    def __init__(self, port: int, topic: str, qos: int = 0) -> None:
        self.port = port
        self.topic = topic
        self.qos = qos
        self.received: list[float] = []  # every message, in order
        self.topics: list[str] = []  # ... and its topic
        self.online_at: dict[str, float] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._offset = time.time() - time.perf_counter()

    def between(self, t0: float, t1: float) -> int:
        """Messages mosquitto_sub received from `t0` to `t1` (perf_counter), once this
        process has read them: call it a moment after `t1`."""
        return bisect.bisect_right(self.received, t1) - bisect.bisect_left(self.received, t0)

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-t", self.topic,
            "-q", str(self.qos), "-F", "%U %t %p", "-R",  # -R: no stale retained messages
            stdout=subprocess.PIPE, limit=1 << 20)
        self._task = asyncio.create_task(self._read())
        await asyncio.sleep(0.3)  # mosquitto_sub connects and subscribes

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            stamp, _, rest = line.partition(" ")
            topic, _, payload = rest.partition(" ")
            at = float(stamp) - self._offset
            self.received.append(at)
            self.topics.append(topic)
            if topic.endswith("/availability") and payload == "online":
                self.online_at.setdefault(topic, at)

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@contextlib.asynccontextmanager
async def counting(port: int, topic: str = "#", qos: int = 0
                   ) -> AsyncIterator[MessageCounter]:
    counter = MessageCounter(port, topic, qos)
    await counter.start()
    try:
        yield counter
    finally:
        await counter.stop()


def wakeup_us(rounds: int = 2000) -> float:
    """Median round trip, in µs, of one byte between two processes over a socket pair:
    the cost of waking a process on another core, which every hop of a command pays
    (client, broker, bridge, device, and back). On this virtual machine it swung
    between ~100 µs and over a millisecond with the host's load within one session
    (the same processes on one core: ~14 µs): latency figures are read against it."""
    cpus = sorted(os.sched_getaffinity(0))
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echo, on another core than the timer
        os.sched_setaffinity(0, {cpus[-1]})
        a.close()
        with contextlib.suppress(OSError):
            while data := b.recv(16):
                b.send(data)
        os._exit(0)
    b.close()
    os.sched_setaffinity(0, {cpus[0]})
    times = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            a.send(b"x")
            a.recv(16)
            times.append(time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, cpus)
        a.close()
        os.waitpid(pid, 0)
    return sorted(times)[rounds // 2] * 1e6


@contextlib.contextmanager
def awake_cpus() -> Iterator[None]:
    """One busy loop per core at SCHED_IDLE priority: it runs only when nothing else
    wants the core, so no process loses CPU to it, but no core ever goes idle. On
    this virtual machine an idle core is a halted vCPU, and waking it costs the
    hypervisor's scheduling on top of the kernel's: the less CPU a bridge uses, the
    more often it pays that between two frames (at 38400 baud: the 241c2ce bridge
    measured 97.8 % of the wire and this one 96.3 %; with the cores kept awake,
    97.0 and 98.0 %). Bare metal, a Raspberry Pi included, wakes a core in
    microseconds."""
    def idle_priority() -> None:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                 preexec_fn=idle_priority)
                for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]
