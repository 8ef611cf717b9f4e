"""The serial guard: a wire-timed RS-485 bus, emulated over TCP, against its wire limit.

`Wire` sits between the bridge (RTU framing over TCP) and a pymodbus RTU-over-TCP
server and behaves like a half-duplex line: a frame occupies the wire for its
transmission time at the baud rate and framing (start + data + parity + stop bits
per character), and is delivered after a further 3.5-character silence (how an RTU
receiver knows the frame ended; 1.75 ms above 19200 baud). One frame at a time, in
either direction.

The wire limit of a poll of `count` registers is one request (8 bytes) and one
reply (5 + 2 x count bytes), each with its gap; the bridge's registers/s are counted
by the simulator (requests answered x registers per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, bridge_process, broker, gateways, stop_all

UNITS, POINTS = 3, 40


def char_time(baud: int, bits: int) -> float:
    return bits / baud


def gap_time(baud: int, bits: int) -> float:
    return 0.00175 if baud > 19200 else 3.5 * bits / baud


def wire_limit(baud: int, bits: int, count: int) -> float:
    """Registers per second the wire allows for reads of `count` registers."""
    chars = 8 + 5 + 2 * count
    seconds = chars * char_time(baud, bits) + 2 * gap_time(baud, bits)
    return count / seconds


class Wire:
    def __init__(self, baud: int, bits: int, target_port: int) -> None:
        self.baud, self.bits = baud, bits
        self.target_port = target_port
        self.free_at = 0.0  # monotonic time when the wire is silent long enough again
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        tasks = [asyncio.create_task(self._carry(reader, up_writer)),
                 asyncio.create_task(self._carry(up_reader, writer))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                w.close()

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            frame = await reader.read(512)  # loopback: one frame per segment
            if not frame:
                return
            now = time.monotonic()
            start = max(now, self.free_at)
            self.free_at = (start + len(frame) * char_time(self.baud, self.bits)
                            + gap_time(self.baud, self.bits))
            await asyncio.sleep(self.free_at - now)
            writer.write(frame)


@dataclass
class WireResult:
    baud: int
    registers_per_s: float
    limit_per_s: float

    @property
    def of_limit(self) -> float:
        return self.registers_per_s / self.limit_per_s


async def run_wire(baud: int, src: Path = REPO, warmup: float = 3.0, window: float = 10.0,
                   parity: str = "E") -> WireResult:
    bits = 1 + 8 + (0 if parity == "N" else 1) + 1
    servers = await gateways(1, UNITS, changing=True, framer="rtu")
    units = list(servers[0].bus.units.values())
    wire = Wire(baud, bits, servers[0].port)
    await wire.start()
    try:
        with broker() as port:
            devices: list[dict[str, Any]] = [{
                "id": f"unit{u}", "unit": u, "poll_interval": 0.05,
                "tcp": {"host": "127.0.0.1", "port": wire.port, "framer": "rtu"},
                "datapoints": [{"name": f"p{a}", "table": "holding", "address": a,
                                "type": "uint16"} for a in range(POINTS)]}
                for u in range(1, UNITS + 1)]
            config = {"mqtt": {"host": "127.0.0.1", "port": port, "client_id": "bench-wire"},
                      "devices": devices}
            async with bridge_process(config, src):
                await asyncio.sleep(warmup)
                n0, t0 = sum(u.requests for u in units), time.perf_counter()
                await asyncio.sleep(window)
                n1, t1 = sum(u.requests for u in units), time.perf_counter()
    finally:
        await wire.stop()
        await stop_all(servers)
    return WireResult(baud, (n1 - n0) * POINTS / (t1 - t0), wire_limit(baud, bits, POINTS))

