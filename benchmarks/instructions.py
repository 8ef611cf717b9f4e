"""Instructions per command: the bridge's CPU cost counted, not timed.

On a shared virtual machine a throughput figure moves by a third from one run to
the next (raw pymodbus alone: 3,000 to 7,000 reads/s within an hour), so a change
that saves 5 % of the CPU per command cannot be seen in it. Valgrind's callgrind
counts the instructions the bridge process executes instead, which does not depend
on the machine's load: two runs of the same tree agree within 0.5 %.

The scenario is `benchmarks/commands.py`'s "500 at once" (MQTT v5
`read_holding_registers` of 10 registers with a Response Topic, published by
`mosquitto_pub`, answered on two topics), with the bridge under callgrind. The
process runs twice, with a flood of SMALL and of LARGE commands; the difference of
the two totals divided by LARGE - SMALL is the cost of one command, free of the
start-up and the fixed part of the run. Then the same for commands sent one at a
time (SEQUENTIAL), where the bridge's loops wake from idle at each one. Raw
pymodbus's cost per read of the same registers (the client of commands.py, under
callgrind too) is printed beside it.

    python -m benchmarks.instructions [--baseline DIR]

needs valgrind (`apt-get install valgrind`); `make bench` runs it when it is there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks import commands
from benchmarks.harness import REPO, BridgeProcess, read_port

SMALL, LARGE = 300, 1300
SEQUENTIAL = 100, 400  # fewer: each waits for its answer, under callgrind ~50x slower


class CountedBridge(BridgeProcess):
    """The bridge under callgrind; `instructions` is its total once it has stopped
    (callgrind writes it as the process ends, ~50x slower than without it)."""

    stop_timeout = 120.0

    def __init__(self, config: dict[str, Any], src: Path, out: Path) -> None:
        super().__init__(config, src)
        self.out = out
        self.prefix = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q")

    @property
    def instructions(self) -> int:
        return _totals(self.out)


def _totals(out: Path) -> int:
    """The instruction count callgrind wrote to `out`."""
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


async def bridge_instructions(src: Path, flood: int, sequential: int = 20) -> int:
    """Instructions of a whole bridge run whose one flood is `flood` commands, after
    `sequential` sent one at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        made: list[CountedBridge] = []

        @contextlib.asynccontextmanager
        async def counted(config: dict[str, Any], src: Path = REPO
                          ) -> AsyncIterator[BridgeProcess]:
            bridge = CountedBridge(config, src, out)
            made.append(bridge)
            await bridge.start()
            try:
                yield bridge
            finally:
                await bridge.stop()

        # A bridge under callgrind runs ~50x slower: room for its answers.
        patch = {"bridge_process": counted,
                 "_until_answering": functools.partial(commands._until_answering,
                                                       timeout=300.0, per_try=10.0),
                 "_flood": functools.partial(commands._flood, timeout=600.0)}
        saved = {name: getattr(commands, name) for name in patch}
        for name, value in patch.items():
            setattr(commands, name, value)
        try:
            result = await commands.run_commands(src, sequential=sequential, at_once=flood,
                                                 rounds=1)
        finally:
            for name, value in saved.items():
                setattr(commands, name, value)
        if result.at_once_answered != flood:
            raise RuntimeError(f"{result.at_once_answered} of {flood} answered")
        return made[0].instructions


async def per_command(src: Path) -> float:
    small = await bridge_instructions(src, SMALL)
    large = await bridge_instructions(src, LARGE)
    return (large - small) / (LARGE - SMALL)


async def per_sequential_command(src: Path) -> float:
    """The same, for commands sent one at a time (each answered before the next): the
    bridge's loops wake from idle at every command, as they do when a person or a
    script asks."""
    small = await bridge_instructions(src, 10, sequential=SEQUENTIAL[0])
    large = await bridge_instructions(src, 10, sequential=SEQUENTIAL[1])
    return (large - small) / (SEQUENTIAL[1] - SEQUENTIAL[0])


_RAW_CLIENT = """
import asyncio, sys
import uvloop
from pymodbus.client import AsyncModbusTcpClient
import bridge.modbus.calls  # the shim the bridge runs pymodbus with
async def main(port, n):
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    await client.connect()
    await asyncio.gather(*(client.read_holding_registers(0, count=10, device_id=1)
                           for _ in range(n)))
    client.close()
uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


async def raw_per_read() -> float:
    """Raw pymodbus's instructions per read (uvloop, as the bridge runs)."""
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.simserver", "1", stdout=subprocess.PIPE, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        port = await read_port(sim)
        totals = []
        with tempfile.TemporaryDirectory() as tmp:
            for n in (SMALL, LARGE):
                out = Path(tmp) / f"raw.{n}"
                proc = await asyncio.create_subprocess_exec(
                    "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q",
                    sys.executable, "-c", _RAW_CLIENT, str(port), str(n), cwd=REPO,
                    env={**os.environ, "PYTHONPATH": str(REPO)})
                if await proc.wait():
                    raise RuntimeError("the raw client failed")
                totals.append(_totals(out))
        return (totals[1] - totals[0]) / (LARGE - SMALL)
    finally:
        sim.terminate()
        await sim.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="source tree of a bridge to compare with")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("instructions: not run (valgrind is not installed)")
        return
    trees = {"this tree": REPO}
    if args.baseline:
        trees = {"baseline": Path(args.baseline).resolve(), **trees}
    for name, src in trees.items():
        print(f"bridge, {name}: {await per_command(src):,.0f} instructions per command "
              f"(500 at once), {await per_sequential_command(src):,.0f} one at a time",
              flush=True)
    print(f"raw pymodbus: {await raw_per_read():,.0f} instructions per read")


if __name__ == "__main__":
    asyncio.run(main())
