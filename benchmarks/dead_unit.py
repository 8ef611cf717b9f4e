"""How long does a healthy unit's read wait while a dead unit on the same line is polled?

Runs on the simulated RS-485 line (socat pty pair + pymodbus RTU server, 19200 baud).
Scenarios, measured in the same run:
  baseline   - only the healthy unit is read
  dead-poll  - a dead unit (no responder) is polled continuously with retries=1
  dead-cmd   - commands to the dead unit are sent continuously as well
Prints p50/p95/max of the healthy unit's command latency for each.

    python -m benchmarks.dead_unit [--reads 200] [--timeout 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import time

from bridge.core.errors import BusError
from bridge.core.points import Table
from bridge.modbus.bus import Priority
from bridge.modbus.registry import ClientRegistry, SerialLine
from bridge.modbus.simulator import SimulatedLine, SimUnit

DEAD = 9


async def scenario(name: str, reads: int, timeout: float, dead_polls: bool,
                   dead_commands: bool) -> list[float]:
    async with SimulatedLine([SimUnit(1, holding={0: 42})], baudrate=19200) as line:
        registry = ClientRegistry()
        wrapper = registry.register(SerialLine(line.path, 19200, "N"), "bench")
        await wrapper.connect_async("bench")
        bus = wrapper.bus

        async def hammer(priority: Priority) -> None:
            while True:
                with contextlib.suppress(BusError):
                    await bus.read(DEAD, Table.HOLDING, 0, 1, timeout=timeout, retries=1,
                                   priority=priority)

        noise = []
        if dead_polls:
            noise.append(asyncio.create_task(hammer(Priority.POLL)))
        if dead_commands:
            noise.append(asyncio.create_task(hammer(Priority.COMMAND)))
        latencies = []
        for _ in range(reads):
            started = time.perf_counter()
            await bus.read(1, Table.HOLDING, 0, 1, timeout=timeout)
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.005)
        for task in noise:
            task.cancel()
        await asyncio.gather(*noise, return_exceptions=True)
        await registry.close()
    return latencies


def summary(name: str, ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return (f"{name:10s} n={len(ms):4d}  p50={statistics.median(ms):7.1f} ms  "
            f"p95={p95:7.1f} ms  max={max(ms):7.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=0.2)
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    print(f"healthy-unit command latency, unit timeout {args.timeout * 1000:.0f} ms, 19200 baud")
    for name, polls, cmds in (("baseline", False, False), ("dead-poll", True, False),
                              ("dead-cmd", True, True)):
        print(summary(name, await scenario(name, args.reads, args.timeout, polls, cmds)))


if __name__ == "__main__":
    asyncio.run(main())
