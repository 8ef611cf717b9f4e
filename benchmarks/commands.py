"""Commands: MQTT v5 request -> reply against raw pymodbus on the same instant TCP
device (sequential latency, and 500 at once), and the 10,000-command burst intake of
benchmarks/burst.py, each against the bridge as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pymodbus.client import AsyncModbusTcpClient

from benchmarks.harness import REPO, bridge_process, broker, cpu_seconds, percentile

REGISTERS = 10


@dataclass
class CommandResult:
    p50_ms: float
    p99_ms: float
    raw_p50_ms: float
    raw_p99_ms: float
    at_once_per_s: float
    raw_at_once_per_s: float
    at_once_answered: int
    cpu_us_sequential: float  # the bridge's CPU per command, one at a time
    cpu_us_at_once: float  # ... and when 500 are queued

    @property
    def overhead_p50_ms(self) -> float:
        return self.p50_ms - self.raw_p50_ms

    @property
    def overhead_p99_ms(self) -> float:
        return self.p99_ms - self.raw_p99_ms


class Replies:
    """An MQTT v5 client sending `read_holding_registers` commands with a Response Topic
    and Correlation Data, and timing each reply."""

    def __init__(self, client: aiomqtt.Client, topic: str) -> None:
        self.client = client
        self.topic = topic
        self.reply_topic = f"replies/bench/{uuid.uuid4().hex[:8]}"  # mqtt.reply_prefix
        self.waiting: dict[bytes, asyncio.Future[float]] = {}

    async def pump(self) -> None:
        async for message in self.client.messages:
            props = message.properties
            key = getattr(props, "CorrelationData", None) if props else None
            future = self.waiting.pop(key, None) if isinstance(key, bytes) else None
            body = json.loads(message.payload) if isinstance(message.payload, bytes) else {}
            if future is not None and not future.done():
                if body.get("ok") is not True or len(body.get("registers", ())) != REGISTERS:
                    future.set_exception(AssertionError(f"bad answer {body}"))
                else:
                    future.set_result(time.perf_counter())

    async def ask(self, n: int) -> float:
        """Send one command; returns its latency in ms."""
        key = f"{n}".encode()
        future = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = key
        body = json.dumps({"id": n, "op": "read_holding_registers", "address": 0,
                           "count": REGISTERS})
        started = time.perf_counter()
        # paho directly: aiomqtt's publish scans all its pending calls per message, which
        # made 500 at once cost this process (where the timing happens) seconds of CPU.
        self.client._client.publish(self.topic, body, 1, False, props)
        return (await asyncio.wait_for(future, 30) - started) * 1000


@contextlib.asynccontextmanager
async def replies(port: int, topic: str) -> AsyncIterator[Replies]:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5,
                              max_inflight_messages=65535,
                              socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
                              ) as client:
        client.pending_calls_threshold = 100_000
        r = Replies(client, topic)
        task = asyncio.create_task(r.pump())
        await client.subscribe(r.reply_topic, qos=1)
        try:
            yield r
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def run_commands(src: Path = REPO, sequential: int = 500, at_once: int = 500
                       ) -> CommandResult:
    with broker() as port:
        # The device in its own process: this one is busy sending and timing.
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.simserver", "1", stdout=subprocess.PIPE,
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert sim.stdout is not None
        gw_port = int((await sim.stdout.readline()).decode())
        # A queue for all of them: `busy` answers would flatter the rate.
        config = {"mqtt": {"host": "127.0.0.1", "port": port, "client_id": "bench-bridge"},
                  "bus": {"queue_size": 2 * at_once},
                  "devices": [{"id": "dev", "tcp": {"host": "127.0.0.1", "port": gw_port},
                               "unit": 1, "poll_interval": 0, "timeout": 1.0,
                               "datapoints": [{"name": "r0", "table": "holding",
                                               "address": 0, "type": "uint16"}]}]}
        try:
            raw_seq, raw_rate = await _raw(gw_port, sequential, at_once)
            async with bridge_process(config, src) as bridge, \
                    replies(port, "modbus/dev/request") as r:
                await _until_answering(r)
                cpu0 = cpu_seconds(bridge.pid)
                seq = [await r.ask(n) for n in range(sequential)]
                cpu_seq = (cpu_seconds(bridge.pid) - cpu0) / sequential * 1e6
                started, cpu0 = time.perf_counter(), cpu_seconds(bridge.pid)
                done = await asyncio.gather(*(r.ask(100_000 + n) for n in range(at_once)),
                                            return_exceptions=True)
                answered = sum(not isinstance(d, BaseException) for d in done)
                rate = answered / (time.perf_counter() - started)
                cpu_at_once = (cpu_seconds(bridge.pid) - cpu0) / at_once * 1e6
        finally:
            sim.terminate()
            await sim.wait()
    return CommandResult(statistics.median(seq), percentile(seq, 0.99),
                         statistics.median(raw_seq), percentile(raw_seq, 0.99),
                         rate, raw_rate, answered, cpu_seq, cpu_at_once)


async def _until_answering(r: Replies, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            await asyncio.wait_for(r.ask(-1), 1.0)
            return
        except (TimeoutError, AssertionError):
            if time.monotonic() > end:
                raise
    # warm-up: the first commands pay for imports and connection set-up


async def _raw(port: int, sequential: int, at_once: int) -> tuple[list[float], float]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    await client.connect()
    try:
        for _ in range(20):
            await client.read_holding_registers(0, count=REGISTERS, device_id=1)
        latencies = []
        for _ in range(sequential):
            started = time.perf_counter()
            reply = await client.read_holding_registers(0, count=REGISTERS, device_id=1)
            latencies.append((time.perf_counter() - started) * 1000)
            assert len(reply.registers) == REGISTERS
        started = time.perf_counter()
        await asyncio.gather(*(client.read_holding_registers(0, count=REGISTERS, device_id=1)
                               for _ in range(at_once)))
        return latencies, at_once / (time.perf_counter() - started)
    finally:
        client.close()


# -- the burst ---------------------------------------------------------------------------


@dataclass
class BurstResult:
    commands: int
    answered_per_s: float  # every answer in, over the whole burst (deadlines included)
    sent_per_s: float  # the client's publishing, acknowledged by the broker
    problems: list[str]
    codes: dict[str, int]


async def run_burst(src: Path = REPO, count: int = 10_000) -> BurstResult:
    """benchmarks/burst.py's burst (two units on a simulated RS-485 line, a TCP device,
    a unit that never answers), against the bridge as its own process."""
    from benchmarks.burst import HEALTHY, burst, load_config
    from bridge.modbus.simulator import SimulatedLine
    from tests.broker import probe
    from tests.conftest import TcpGateway, meter_unit

    with broker() as port, tempfile.TemporaryDirectory():
        gateway = TcpGateway([meter_unit(1), meter_unit(2)])
        await gateway.start()
        try:
            async with SimulatedLine([meter_unit(1), meter_unit(2)]) as line:
                config: dict[str, Any] = load_config(port, line.path, gateway.port)
                async with probe(port, subscribe="modbus/+/availability") as watcher, \
                        bridge_process(config, src):
                    for device in HEALTHY:
                        await watcher.expect(f"modbus/{device}/availability",
                                             lambda m: m.text == "online", timeout=30)
                    report = await burst(port, count)
        finally:
            await gateway.stop()
    return BurstResult(count, report.rate, count / max(report.publish_s, 1e-9),
                       report.problems(), dict(report.totals()))
