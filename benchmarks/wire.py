"""The serial guard: a wire-timed RS-485 bus, emulated over TCP, against its wire limit.

The bridge polls units 1-3 (RTU framing over TCP) through `Wire`, which behaves like a
half-duplex line with instant devices on it: a frame occupies the wire for its
transmission time at the baud rate and framing (start + data + parity + stop bits
per character) and is delivered after a further 3.5-character silence (how an RTU
receiver knows the frame ended; 1.75 ms above 19200 baud). The addressed unit's
reply (read holding registers; every register has a new value at every read, so the
bridge publishes them) starts on the wire as soon as the request's silence is over.
One frame at a time, in either direction.

So the only time the wire is not busy is the bridge's: its turnaround from a reply
to the next request. The emulator runs in its own process and times frames with
blocking sockets and `time.sleep` (an event loop wakes up to a millisecond late,
epoll's resolution: at 38400 baud that was 3 % of a poll), and the devices answer in
it (a simulated device in Python took 0.6-0.8 ms per request: 2.5 % of a 38400-baud
poll charged to the bridge). A request starts on the wire when the kernel received
it (its receive time stamp), not when the emulator's thread woke up to read it: that
wake-up, 0.3 ms a poll on this virtual machine, was 1 % of a 38400-baud poll.

The wire limit of a poll of `count` registers is one request (8 bytes) and one
reply (5 + 2 x count bytes), each with its gap; the bridge's registers/s are counted
by the emulator (registers delivered).

    python -m benchmarks.wire BAUD BITS

runs the emulator alone: it prints its port, then answers each line on its stdin
with the number of registers it has delivered and when it delivered the last ones
(the rate is measured from delivery to delivery: at 9600 baud a 10 s window holds
only 87 polls, and counting whole polls in it would be 1 % off).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus.framer import FramerRTU

from benchmarks.harness import REPO, bridge_process, broker, helper_process, read_port

UNITS, POINTS = 3, 40
SPIN = 0.0005  # s: see _wait_until
SO_TIMESTAMPNS = 35  # Linux (asm-generic); the socket module does not name it


def char_time(baud: int, bits: int) -> float:
    return bits / baud


def gap_time(baud: int, bits: int) -> float:
    return 0.00175 if baud > 19200 else 3.5 * bits / baud


def reply_bytes(count: int) -> int:
    return 5 + 2 * count  # unit, function, byte count, registers, CRC


def wire_limit(baud: int, bits: int, count: int) -> float:
    """Registers per second the wire allows for reads of `count` registers."""
    chars = 8 + reply_bytes(count)
    seconds = chars * char_time(baud, bits) + 2 * gap_time(baud, bits)
    return count / seconds


class Wire:
    def __init__(self, baud: int, bits: int) -> None:
        self.char, self.gap = char_time(baud, bits), gap_time(baud, bits)
        self.free_at = 0.0  # monotonic time when the wire is silent long enough again
        self.registers = 0  # delivered
        self.delivered_at = 0.0  # monotonic time of the last delivery
        self.reads = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def serve(self) -> None:
        while True:
            sock, _ = self.listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._line, args=(sock,), daemon=True).start()

    def _line(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        with sock:
            while True:
                # loopback: one frame per segment
                request, ancillary, _, _ = sock.recvmsg(512, socket.CMSG_SPACE(16))
                if not request:
                    return
                with self.lock:
                    start = max(_sent_at(ancillary), self.free_at)
                    heard = start + len(request) * self.char + self.gap
                    reply = self.answer(request)
                    if reply is None:  # not for a unit here, or garbled: silence
                        self.free_at = heard
                        continue
                    self.free_at = heard + len(reply) * self.char + self.gap
                    due = self.free_at
                _wait_until(due)
                sock.sendall(reply)
                self.registers += (len(reply) - 5) // 2
                self.delivered_at = due

    def answer(self, request: bytes) -> bytes | None:
        """Read holding registers (function 3) from units 1..UNITS, else None."""
        if len(request) != 8 or not 1 <= request[0] <= UNITS or request[1] != 3 or \
                FramerRTU.compute_CRC(request[:6]).to_bytes(2, "big") != request[6:]:
            return None
        address, count = int.from_bytes(request[2:4], "big"), int.from_bytes(request[4:6], "big")
        self.reads += 1
        base = self.reads * 7
        body = bytes([request[0], 3, 2 * count]) + b"".join(
            ((base + a) & 0xFFFF).to_bytes(2, "big") for a in range(address, address + count))
        return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


def _sent_at(ancillary: list[tuple[int, int, bytes]]) -> float:
    """When the request reached this socket (the kernel's receive time stamp), on the
    monotonic clock: the wire is the bridge's from the moment it wrote the frame. The
    time this thread took to wake up (on this virtual machine 0.1 ms and more when its
    core was idle) is the emulator's, and was charged to the bridge."""
    now_mono, now_real = time.monotonic(), time.time()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return min(now_mono, now_mono - (now_real - seconds - nanoseconds / 1e9))
    return now_mono


def _wait_until(due: float) -> None:
    """time.sleep wakes up 0.1-0.3 ms late on a busy machine: sleep until shortly
    before `due`, then spin."""
    if (delay := due - time.monotonic() - SPIN) > 0:
        time.sleep(delay)
    while time.monotonic() < due:
        pass


def main(argv: list[str]) -> None:
    baud, bits = (int(a) for a in argv)
    wire = Wire(baud, bits)
    threading.Thread(target=wire.serve, daemon=True).start()
    print(wire.port, flush=True)
    for _ in sys.stdin:
        print(wire.registers, wire.delivered_at, flush=True)


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
    async with helper_process("benchmarks.wire", str(baud), str(bits)) as wire:
        wire_port = await read_port(wire)

        async def delivered() -> tuple[int, float]:
            assert wire.stdin is not None and wire.stdout is not None
            wire.stdin.write(b"?\n")
            registers, at = (await wire.stdout.readline()).split()
            return int(registers), float(at)

        with broker() as port:
            devices: list[dict[str, Any]] = [{
                "id": f"unit{u}", "unit": u, "poll_interval": 0.05,
                "tcp": {"host": "127.0.0.1", "port": wire_port, "framer": "rtu"},
                "datapoints": [{"name": f"p{a}", "table": "holding", "address": a,
                                "type": "uint16"} for a in range(POINTS)]}
                for u in range(1, UNITS + 1)]
            config = {"mqtt": {"host": "127.0.0.1", "port": port, "client_id": "bench-wire"},
                      "devices": devices}
            async with bridge_process(config, src):
                await asyncio.sleep(warmup)
                n0, t0 = await delivered()
                await asyncio.sleep(window)
                n1, t1 = await delivered()
    return WireResult(baud, (n1 - n0) / (t1 - t0), wire_limit(baud, bits, POINTS))


if __name__ == "__main__":
    main(sys.argv[1:])
