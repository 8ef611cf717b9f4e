"""A simulated Modbus TCP gateway in its own process, so a benchmark's client work
(thousands of MQTT messages) cannot slow the device down: `python -m
benchmarks.simserver UNITS` prints its port, then serves until terminated."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from benchmarks.harness import gateways


async def main(units: int) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    (gateway,) = await gateways(1, units, changing=False)
    print(gateway.port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await gateway.server.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
