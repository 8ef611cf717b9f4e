"""How fast the bridge's log grows under garbage: for `--seconds` (default 60) a TCP
unit answers every request with random bytes or a wrong byte count, commands are sent
to it as fast as they are answered, and retained commands with 60 KB topics arrive
ten a second. Prints log lines per minute (and bytes); they must stay within the log
budget (10 lines at once, then 10 a minute, per cause) whatever the traffic.

    python -m benchmarks.garbage_log [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines = 0
        self.bytes = 0
        self.tracebacks = 0
        self.sources: dict[str, int] = {}  # lines per log call site
        self.first_traceback: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.lines += text.count("\n") + 1
        self.bytes += len(text) + 1
        self.tracebacks += record.exc_info is not None
        if record.exc_info is not None and self.first_traceback is None:
            self.first_traceback = text
        key = f"{record.name}: {record.msg}"[:80]
        self.sources[key] = self.sources.get(key, 0) + 1


async def run(seconds: float) -> dict[str, Any]:
    from bridge.modbus.simulator import SimulatedLine
    from tests.broker import Mosquitto, probe
    from tests.conftest import meter_unit
    from tests.e2e import make_config, running_bridge
    from tests.misbehaving import MisbehavingServer

    counter = Counter()
    counter.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(counter)
    root.setLevel(logging.INFO)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # as `bridge run` does
    commands = retained = 0
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        try:
            async with SimulatedLine([meter_unit(1)]) as line, \
                    MisbehavingServer("garbage") as server:
                config = make_config(broker.port, line.path)
                config["devices"] = [config["devices"][0], {
                    "id": "odd", "tcp": {"host": "127.0.0.1", "port": server.port},
                    "unit": 1, "timeout": 0.3, "retries": 0, "poll_interval": 0.05,
                    "datapoints": [{"name": "h0", "table": "holding", "address": 0,
                                    "type": "uint16"}]}]
                async with running_bridge(config), probe(broker.port,
                                                         subscribe="modbus/+/+") as p:
                    await p.expect("modbus/bridge/state", lambda m: m.text == "online")
                    counter.lines = counter.bytes = 0
                    started = time.monotonic()
                    end = started + seconds
                    next_retained = started
                    while time.monotonic() < end:
                        server.mode = "garbage" if commands % 2 else "bad_count"
                        await p.request("odd", {"op": "read_holding_registers",
                                                "address": 0, "count": 4})
                        commands += 1
                        if time.monotonic() >= next_retained:
                            topic = f"modbus/meter1/set/{'x' * 60_000}{retained % 10}"
                            await p.publish(topic, "1", retain=True)
                            retained += 1
                            next_retained += 0.1
                    elapsed = time.monotonic() - started
                    for n in range(10):
                        await p.publish(f"modbus/meter1/set/{'x' * 60_000}{n}", b"",
                                        retain=True)
        finally:
            broker.stop()
            root.removeHandler(counter)
    minutes = elapsed / 60
    return {"seconds": round(elapsed, 1), "commands": commands,
            "retained_commands": retained, "log_lines": counter.lines,
            "lines_per_minute": round(counter.lines / minutes, 1),
            "log_bytes_per_minute": round(counter.bytes / minutes),
            "tracebacks": counter.tracebacks, "server_requests": server.requests,
            "sources": counter.sources, "first_traceback": counter.first_traceback}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    results = asyncio.run(run(args.seconds))
    print(f"{results['seconds']} s of garbage: {results['server_requests']} garbage replies, "
          f"{results['retained_commands']} retained 60 KB-topic commands -> "
          f"{results['log_lines']} log lines ({results['lines_per_minute']}/min, "
          f"{results['log_bytes_per_minute']} bytes/min), {results['tracebacks']} tracebacks")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
