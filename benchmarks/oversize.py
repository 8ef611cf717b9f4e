"""RSS of the bridge (its own process) under oversized commands: one of 50 MB, ten of
20 MB, then 1,000 of 120 KB (over the payload limit, under the packet limit: each is
read and answered "too large"). Prints the RSS after each phase and writes JSON.

    python -m benchmarks.oversize [--protocol 5|3.1.1] [--json out.json]

Over MQTT v5 the bridge announces its Maximum Packet Size, so the broker never
sends it the big ones; over 3.1.1 there is no such announcement and only the
broker's max_packet_size (the shipped mosquitto.conf sets one) protects it: this
benchmark's broker sets none, to show the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.burst import rss_mb


async def _settle(pid: int, seconds: float = 2.0) -> float:
    """The RSS once it stops changing for a moment (the bridge digests what came)."""
    last, end = rss_mb(pid), time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.25)
        last = rss_mb(pid)
    return last


async def run(protocol: str) -> dict[str, Any]:
    from bridge.modbus.simulator import SimulatedLine
    from tests.broker import Mosquitto, probe
    from tests.conftest import meter_unit
    from tests.e2e import make_config

    results: dict[str, Any] = {"protocol": protocol}
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        try:
            async with SimulatedLine([meter_unit(1), meter_unit(2)]) as line:
                config = make_config(broker.port, line.path, mqtt={"protocol": protocol})
                path = Path(tmp) / "bridge.yaml"
                path.write_text(yaml.safe_dump(config))
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bridge", "run", "--config", str(path),
                    stderr=asyncio.subprocess.DEVNULL)
                try:
                    async with probe(broker.port, subscribe="modbus/meter1/#") as p:
                        await p.expect("modbus/meter1/availability",
                                       lambda m: m.text == "online", timeout=30)
                        results["idle_mb"] = await _settle(proc.pid)
                        phases = [("one_50mb", 1, 50 << 20), ("ten_20mb", 10, 20 << 20),
                                  ("thousand_120kb", 1000, 120 << 10)]
                        for name, count, size in phases:
                            body = b'{"op": "read", "x": "' + b"A" * size + b'"}'
                            for _ in range(count):
                                await p.publish("modbus/meter1/request", body)
                            answer = await p.request("meter1", {"op": "read"}, timeout=120)
                            assert answer["ok"], answer
                            results[f"{name}_mb"] = await _settle(proc.pid)
                        results["peak_mb"] = _peak(proc.pid)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    await proc.wait()
        finally:
            broker.stop()
    return results


def _peak(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="5", choices=["5", "3.1.1"])
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    results = asyncio.run(run(args.protocol))
    print(f"MQTT {args.protocol}: RSS (MB) idle {results['idle_mb']:.1f}, after one 50 MB "
          f"{results['one_50mb_mb']:.1f}, after ten 20 MB {results['ten_20mb_mb']:.1f}, "
          f"after 1,000 x 120 KB {results['thousand_120kb_mb']:.1f}; "
          f"peak {results['peak_mb']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
