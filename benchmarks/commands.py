"""Commands: MQTT v5 request -> reply against raw pymodbus on the same instant TCP
device (sequential latency, and 500 at once), against the bridge as its own process.
The burst intake is benchmarks/intake.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
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

from benchmarks.harness import (
    REPO,
    bridge_process,
    broker,
    cpu_seconds,
    helper_process,
    percentile,
    read_port,
)
from benchmarks.intake import answers, command_lines, publisher
from bridge.mqtt.properties import install as install_publish_properties

REGISTERS = 10
# This process decodes replies with the bridge's one-pass v5 properties decoder (paho's
# own rebuilt two tables per message, on the timed path of every reply).
install_publish_properties()


@dataclass
class CommandResult:
    p50_ms: float
    p99_ms: float
    raw_p50_ms: float
    raw_p99_ms: float
    at_once_per_s: float
    raw_at_once_per_s: float
    at_once_of_raw: float  # median over the rounds of bridge/raw, each pair measured together
    at_once_rounds: list[float]  # bridge/raw of each round: the machine's swings show here
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

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """paho's callback, straight: aiomqtt's message iterator (a task and an
        asyncio.wait per message) would sit on the timed path of every reply."""
        props = getattr(message, "properties", None)
        key = getattr(props, "CorrelationData", None) if props else None
        future = self.waiting.pop(key, None) if isinstance(key, bytes) else None
        if future is None or future.done():
            return
        body = json.loads(message.payload)
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
        client._client.on_message = r.on_message
        await client.subscribe(r.reply_topic, qos=1)
        yield r


async def run_commands(src: Path = REPO, sequential: int = 1000, at_once: int = 500,
                       rounds: int = 7) -> CommandResult:
    """Raw pymodbus and the bridge take turns, request by request (and batch by batch
    for `at_once`, seven rounds), so both see the same machine: measured one after the other, a
    change in the load of this shared machine between the two skewed the overhead."""
    with broker() as port:
        # The device in its own process: this one is busy sending and timing.
        async with helper_process("benchmarks.simserver", "1") as sim:
            gw_port = await read_port(sim)
            # A queue for all of them: `busy` answers would flatter the rate.
            config = {"mqtt": {"host": "127.0.0.1", "port": port, "client_id": "bench-bridge"},
                      "bus": {"queue_size": 2 * at_once},
                      "devices": [{"id": "dev", "tcp": {"host": "127.0.0.1", "port": gw_port},
                                   "unit": 1, "poll_interval": 0, "timeout": 1.0,
                                   "datapoints": [{"name": "r0", "table": "holding",
                                                   "address": 0, "type": "uint16"}]}]}
            async with _raw_client(gw_port) as raw, bridge_process(config, src) as bridge, \
                    replies(port, "modbus/dev/request") as r:
                await _until_answering(r)
                for n in range(50):  # warm-up: imports, connections, caches
                    await raw.one()
                    await r.ask(n)
                seq: list[float] = []
                raw_seq: list[float] = []
                cpu0 = cpu_seconds(bridge.pid)  # the bridge idles during the raw reads
                for n in range(sequential):
                    raw_seq.append(await raw.one())
                    seq.append(await r.ask(n))
                cpu_seq = cpu_seconds(bridge.pid) - cpu0
                rates: list[float] = []
                raw_rates: list[float] = []
                cpu_at_once = 0.0
                answered = 0
                flood_topic = f"{r.reply_topic}/flood"
                for k in range(rounds):
                    raw_rates.append(await raw.batch(at_once))
                    cpu0 = cpu_seconds(bridge.pid)
                    rate, ok = await _flood(port, flood_topic, [f"{k}-{n}" for n in range(at_once)])
                    cpu_at_once += cpu_seconds(bridge.pid) - cpu0
                    rates.append(rate)
                    answered += ok
    return CommandResult(statistics.median(seq), percentile(seq, 0.99),
                         statistics.median(raw_seq), percentile(raw_seq, 0.99),
                         statistics.median(rates), statistics.median(raw_rates),
                         statistics.median(ratios := [b / r for b, r in zip(rates, raw_rates,
                                                                              strict=True)]),
                         ratios,
                         answered // rounds, cpu_seq / sequential * 1e6,
                         cpu_at_once / (rounds * at_once) * 1e6)


async def _flood(port: int, reply_topic: str, ids: list[str], timeout: float = 30.0
                 ) -> tuple[float, int]:
    """`ids` commands published at once by `mosquitto_pub` (C: Python's paho, building
    v5 properties per message, made this benchmark's client the limit at ~1,600/s);
    commands answered ok per second, counted by `mosquitto_sub`, and how many.

    The replies only, as a requester takes them: the bridge still publishes each
    retained response (its CPU counts here), but taking a second copy of every answer
    cost the broker and the subscriber CPU of this 2-core machine (the subscriber alone
    27 µs per command) that raw pymodbus does not pay: 4 to 6 points of raw in paired
    rounds. Both channels are checked, command by command, by the burst benchmark."""
    async with answers(port, reply_topic, len(ids), timeout, responses=False) as (got, last):
        proc = await publisher(port, "modbus/dev/request", reply_topic)
        await asyncio.sleep(0.3)  # connected: the clock runs from the first command
        started = time.perf_counter()
        await proc.communicate(command_lines(ids, REGISTERS))
        elapsed = await last() - started
    ok = sum(1 for rid in ids for a in got.replies.get(rid, ())
             if a.code == "ok" and len(a.registers or ()) == REGISTERS)
    return ok / elapsed, ok


async def _until_answering(r: Replies, timeout: float = 30.0, per_try: float = 1.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            await asyncio.wait_for(r.ask(-1), per_try)
            return
        except (TimeoutError, AssertionError):
            if time.monotonic() > end:
                raise


class _Raw:
    def __init__(self, client: AsyncModbusTcpClient) -> None:
        self.client = client

    async def one(self) -> float:
        """One read; its latency in ms."""
        started = time.perf_counter()
        reply = await self.client.read_holding_registers(0, count=REGISTERS, device_id=1)
        latency = (time.perf_counter() - started) * 1000
        assert len(reply.registers) == REGISTERS
        return latency

    async def batch(self, count: int) -> float:
        """`count` reads at once; reads/s."""
        started = time.perf_counter()
        await asyncio.gather(*(self.client.read_holding_registers(0, count=REGISTERS,
                                                                  device_id=1)
                               for _ in range(count)))
        return count / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def _raw_client(port: int) -> AsyncIterator[_Raw]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    await client.connect()
    try:
        yield _Raw(client)
    finally:
        client.close()
