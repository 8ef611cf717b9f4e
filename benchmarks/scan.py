"""How long does a bus scan take, and how long does a healthy unit's poll wait
during one?

On the simulated RS-485 line (socat pty pair + pymodbus RTU server, 19200 baud)
with units 1 and 2 answering data, 5 answering exception 02, 7 silent and the rest
absent. Scenarios:
  standalone - `bridge scan` (its own client): 1..247 at the default timeout
  shared     - the same scan through a bus that also polls unit 1 every 0.5 s;
               prints how long those polls took meanwhile (p50/p95/max)

    python -m benchmarks.scan [--units 1-247] [--timeout 0.2] [--json scan.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from typing import Any

from bridge.core.points import Table
from bridge.core.scan import DEFAULT_TIMEOUT, parse_units
from bridge.modbus.bus import Priority
from bridge.modbus.registry import ClientRegistry, SerialLine
from bridge.modbus.scan import scan_bus, scan_transport
from bridge.modbus.simulator import SimulatedLine, SimUnit, quiet_pymodbus

BAUD = 19200


def units_on_the_line() -> list[SimUnit]:
    return [SimUnit(1, holding={0: 1}), SimUnit(2, holding={0: 2}),
            SimUnit(5, mode="exception", exception_code=2), SimUnit(7, mode="silent")]


async def standalone(units: list[int], timeout: float) -> dict[str, Any]:
    async with SimulatedLine(units_on_the_line(), baudrate=BAUD) as line:
        report = await scan_transport(SerialLine(line.path, BAUD, "N"), units,
                                      timeout=timeout)
    return {"scenario": "standalone", "units": len(units), "timeout": timeout,
            "seconds": round(report.seconds, 2),
            "found": [f.unit for f in report.present]}


async def shared(units: list[int], timeout: float) -> dict[str, Any]:
    async with SimulatedLine(units_on_the_line(), baudrate=BAUD) as line:
        registry = ClientRegistry()
        wrapper = registry.register(SerialLine(line.path, BAUD, "N"), "bench")
        await wrapper.connect_async("bench")
        waits: list[float] = []

        async def poll() -> None:
            while True:
                started = time.monotonic()
                await wrapper.bus.read(1, Table.HOLDING, 0, 1, priority=Priority.POLL,
                                       timeout=1.0)
                waits.append((time.monotonic() - started) * 1000)
                await asyncio.sleep(0.5)

        poller = asyncio.create_task(poll())
        try:
            report = await scan_bus(wrapper.bus, units, timeout=timeout)
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await registry.close()
    waits.sort()
    return {"scenario": "shared", "units": len(units), "timeout": timeout,
            "seconds": round(report.seconds, 2), "found": [f.unit for f in report.present],
            "polls": len(waits), "poll_p50_ms": round(statistics.median(waits), 1),
            "poll_p95_ms": round(waits[int(len(waits) * 0.95) - 1], 1),
            "poll_max_ms": round(waits[-1], 1)}


async def main() -> tuple[list[dict[str, Any]], str | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", default="1-247")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    units = parse_units(args.units, range(1, 248))
    rows = []
    with quiet_pymodbus():
        for run in (standalone, shared):
            rows.append(await run(units, args.timeout))
            row = rows[-1]
            extra = "" if "polls" not in row else (
                f"  polls meanwhile: {row['polls']}, wait p50 {row['poll_p50_ms']} ms,"
                f" p95 {row['poll_p95_ms']} ms, max {row['poll_max_ms']} ms")
            print(f"{row['scenario']:<10} {row['units']} units at {row['timeout']:g} s:"
                  f" {row['seconds']:.1f} s, found {row['found']}{extra}", flush=True)
    return rows, args.json


if __name__ == "__main__":
    results, path = asyncio.run(main())
    if path:
        with open(path, "w") as file:
            json.dump(results, file, indent=2)
