"""A simulated Modbus TCP gateway in its own process, so a benchmark's client work
(thousands of MQTT messages) cannot slow the device down:

    python -m benchmarks.simserver UNITS [--framer rtu] [--changing]

prints its port, then serves units 1..UNITS until terminated (harness.simserver)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from benchmarks.harness import gateways


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("units", type=int, nargs="?", default=1)
    parser.add_argument("--framer", default="socket", choices=("socket", "rtu"))
    parser.add_argument("--changing", action="store_true",
                        help="every register has a new value at every read")
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    (gateway,) = await gateways(1, args.units, changing=args.changing, framer=args.framer)
    print(gateway.port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await gateway.server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
