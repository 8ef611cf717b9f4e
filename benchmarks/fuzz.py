"""End-to-end fuzz: hostile payloads to every command topic of a running bridge.

Used by tests/test_fuzz.py (2,000 payloads in CI); run longer by hand:

    python -m benchmarks.fuzz --count 50000 --seed 7

It starts its own mosquitto (loopback, free port), simulated line and bridge,
sends the payloads, and checks: every message answered on `response`, the
bridge still `online`, the other device's registers untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

OPS = ["read_holding_registers", "read_input_registers", "read_coils", "read_discrete_inputs",
       "write_register", "write_registers", "write_coil", "write_coils", "read", "write"]
NASTY_SCALARS: list[object] = [
    None, True, False, 0, -1, 1.5, -0.0, 65535, 65536, 2**63, -(2**63) - 1, 10**400 // 10**300,
    1e308, "", "0", "NaN", "Infinity", "ON", "heat", "\u0000", "\ud7ff" * 3, "x" * 5000, [], {},
    [1, 2, 3], {"a": 1},
]


def _scalar(rng: random.Random) -> object:
    return rng.choice(NASTY_SCALARS)


def _json_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.random()
    if depth > 3 or kind < 0.5:
        return _scalar(rng)
    if kind < 0.75:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["id", "op", "address", "count", "value", "values", "datapoints", "x"]):
            _json_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _command(rng: random.Random, names: list[str]) -> dict[str, object]:
    body: dict[str, object] = {"id": rng.choice([rng.randint(0, 9999), "f", None, [], 1.5])}
    body["op"] = rng.choice([*OPS, "dance", "", 7])
    for key in ("address", "count", "value", "values", "datapoints"):
        if rng.random() < 0.6:
            body[key] = rng.choice([_scalar(rng), rng.randint(-5, 70000),
                                    [rng.randint(-1, 70000) for _ in range(rng.randint(0, 3))],
                                    {rng.choice(names): _scalar(rng)}, [rng.choice(names)]])
    return body


def hostile_payloads(count: int, seed: int, names: list[str]) -> Iterator[bytes]:
    """`count` payloads mixing garbage bytes, deep/huge JSON and plausible-but-wrong commands."""
    rng = random.Random(seed)
    for n in range(count):
        kind = n % 10
        if kind == 0:
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        elif kind == 1:
            depth = rng.choice([50, 500, 5000, 12000])  # < 80 KB: under the packet limit
            yield (b"[" * depth + b"]" * depth) if rng.random() < 0.5 else \
                (b'{"a":' * depth + b"1" + b"}" * depth)
        elif kind == 2:
            yield json.dumps({"op": "read", "datapoints": names}).encode() if rng.random() < .5 \
                else b'{"op":"read_holding_registers","address":1e999,"count":-1e999}'
        elif kind == 3 and n % 200 == 3:
            # Over the payload limit, under the bridge's Maximum Packet Size: answered.
            yield b'{"id": "big", "op": "write", "values": {"x": "' + b"A" * 100_000 + b'"}}'
        elif kind == 4:
            yield str(rng.choice([10**100, -(10**100), 3.14, "NaN"])).encode()
        elif kind == 5:
            yield json.dumps(_json_value(rng)).encode()
        else:
            yield json.dumps(_command(rng, names)).encode()


# Every code a typed answer may carry (mqtt-api.md), minus `internal`: an internal
# error is a bug the fuzz run exists to find.
TYPED_CODES = frozenset({
    "ok", "invalid_json", "invalid_request", "unknown_datapoint", "not_writable",
    "out_of_range", "raw_write_disabled", "modbus_exception", "timeout",
    "port_unavailable", "busy", "expired"})
REPLIES = "replies/fuzz"  # under the bridge's reply prefix (mqtt.reply_prefix)


@dataclass
class FuzzReport:
    sent: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    unanswered: list[int] = field(default_factory=list)
    duplicates: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{self.sent} payloads in {self.seconds:.1f} s, "
                f"{self.sent - len(self.unanswered)} answered, "
                f"{len(self.unanswered)} unanswered, {self.duplicates} duplicated; "
                f"codes {dict(self.codes.most_common())}"
                + (f"; unanswered: {self.unanswered[:10]}" if self.unanswered else ""))


def fuzz_topics(base: str, devices: dict[str, list[str]], rng: random.Random) -> str:
    device = rng.choice(sorted(devices))
    kind = rng.random()
    if kind < 0.6:
        return f"{base}/{device}/request"
    if kind < 0.75:
        return f"{base}/{device}/set"
    if kind < 0.9:
        names = [*devices[device], "nope", "x" * 200, "%00"]
        return f"{base}/{device}/set/{rng.choice(names)}"
    return f"{base}/{device}/get"


async def fuzz(broker_port: int, devices: dict[str, list[str]], count: int, seed: int,
               base: str = "modbus", answer_timeout: float = 60.0) -> FuzzReport:
    """Send `count` hostile payloads to the command topics of `devices` (id -> datapoint
    names), each with an MQTT v5 Response Topic and its number as Correlation Data,
    and collect one answer per payload."""
    from tests.broker import probe  # the test-side MQTT client (real broker, bounded waits)

    rng = random.Random(seed)
    names = sorted({n for dps in devices.values() for n in dps})
    report = FuzzReport()
    answers: dict[int, list[str]] = {}
    started = time.monotonic()
    async with probe(broker_port, subscribe=f"{REPLIES}/#") as client:
        for n, payload in enumerate(hostile_payloads(count, seed, names)):
            await client.publish(fuzz_topics(base, devices, rng), payload,
                                 response_topic=REPLIES, correlation=str(n).encode())
            report.sent += 1
        end = time.monotonic() + answer_timeout
        read = 0
        while len(answers) < count and time.monotonic() < end:
            for m in client.seen[read:]:
                body = m.json()
                code = "ok" if body.get("ok") else body["error"]["code"]
                answers.setdefault(int(m.properties.CorrelationData), []).append(code)
            read = len(client.seen)
            await client.wait_new(1.0)
    report.seconds = time.monotonic() - started
    report.unanswered = [n for n in range(count) if n not in answers]
    for codes in answers.values():
        report.codes.update(codes)
        report.duplicates += len(codes) - 1
    return report


async def _main() -> None:
    parser = argparse.ArgumentParser(description="end-to-end fuzz of a running bridge")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    from bridge.modbus.simulator import SimulatedLine
    from tests.broker import Mosquitto, probe
    from tests.conftest import meter_unit
    from tests.e2e import make_config, points_meter, running_bridge

    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        try:
            async with SimulatedLine([meter_unit(1), meter_unit(2)]) as line:
                before = dict(line.unit(2).holding)
                async with running_bridge(make_config(broker.port, line.path)) as bridge, \
                        probe(broker.port) as watcher:
                    await watcher.expect("modbus/meter1/availability",
                                         lambda m: m.text == "online")
                    names = [p["name"] for p in points_meter()]
                    report = await fuzz(broker.port, {"meter1": names}, args.count, args.seed)
                    print(report)
                    print(f"bridge still running: {not bridge.stopping.is_set()}, "
                          f"meter2 registers untouched: {line.unit(2).holding == before}")
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(_main())
