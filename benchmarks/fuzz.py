"""End-to-end fuzz: hostile payloads to every command topic of a running bridge.

Used by tests/test_fuzz.py (2,000 payloads in CI); run longer by hand:

    python -m benchmarks.fuzz --count 50000 --seed 7

It starts its own mosquitto (loopback, free port), simulated line and bridge,
sends the payloads, and checks: every message answered on `response`, the
bridge still `online`, the other device's registers untouched.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

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
            depth = rng.choice([50, 500, 5000, 100000])
            yield (b"[" * depth + b"]" * depth) if rng.random() < 0.5 else \
                (b'{"a":' * depth + b"1" + b"}" * depth)
        elif kind == 2:
            yield json.dumps({"op": "read", "datapoints": names}).encode() if rng.random() < .5 \
                else b'{"op":"read_holding_registers","address":1e999,"count":-1e999}'
        elif kind == 3 and n % 200 == 3:
            yield b'{"id": "big", "op": "write", "values": {"x": "' + b"A" * 1_000_000 + b'"}}'
        elif kind == 4:
            yield str(rng.choice([10**100, -(10**100), 3.14, "NaN"])).encode()
        elif kind == 5:
            yield json.dumps(_json_value(rng)).encode()
        else:
            yield json.dumps(_command(rng, names)).encode()
