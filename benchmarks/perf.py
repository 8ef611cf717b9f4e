"""`make bench`: the performance scenarios of issue 13, each with the bridge as its own
process against a real mosquitto on loopback, printed as one table and written as JSON.

    python -m benchmarks.perf [--baseline DIR] [--peer DIR] [--only fleet,commands,...]

--baseline DIR  also run every scenario with the bridge from another source tree (a
                checkout of an older commit: `git worktree add /tmp/base <commit>`), in
                the same run, each scenario for both trees back to back, so both
                columns see the same machine load
--peer DIR      a checkout (or git repository) of spicierModbus2mqtt, run on the same
                fleet for comparison; without it that row says "not run"

Scenarios: fleet (100 devices = 10 TCP gateways x 10 units x 50 uint16 datapoints,
polled every 1 s, all values changing, per-datapoint topics on), json (the same with
per-datapoint topics off), static (values never change), qos0 (fleet with mqtt.qos 0),
commands (MQTT v5 request -> reply vs raw pymodbus, sequential and 500 at once),
burst (10,000 commands, benchmarks/intake.py), wire (the wire-timed serial guard at 9600
and 38400 baud, benchmarks/wire.py). CPU is the bridge process's own CPU time over the
measuring window, in % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.commands import run_commands
from benchmarks.fleet import FleetResult, peer_source, run_fleet, run_peer
from benchmarks.harness import REPO, awake_cpus, wakeup_us
from benchmarks.intake import run_burst
from benchmarks.wire import run_wire

SCENARIOS = ("fleet", "json", "static", "qos0", "commands", "burst", "wire")
Row = tuple[str, str, Callable[[dict[str, Any]], str]]


async def run_scenario(name: str, src: Path, window: float) -> dict[str, Any]:
    """One scenario against the bridge from source tree `src`: its results by row key."""
    fleets: dict[str, dict[str, Any]] = {"fleet": {}, "json": {"per_point": False},
                                         "static": {"changing": False}, "qos0": {"qos": 0}}
    if name in fleets:
        result: FleetResult = await run_fleet(name, src=src, window=window, **fleets[name])
        print(f"  {name}: {result.published_per_s:.0f}/{result.expected_per_s:.0f} msg/s, "
              f"CPU {result.cpu_percent:.1f}%, RSS {result.rss_mb:.0f} MB", flush=True)
        return {name: result.as_dict()}
    if name == "commands":
        commands = await run_commands(src)
        out = {**asdict(commands), "overhead_p50_ms": commands.overhead_p50_ms,
               "overhead_p99_ms": commands.overhead_p99_ms}
        print(f"  commands: {out}", flush=True)
        return {"commands": out}
    if name == "burst":
        burst = asdict(await run_burst(src))
        print(f"  burst: {burst}", flush=True)
        return {"burst": burst}
    wires: dict[str, Any] = {}
    for baud in (9600, 38400):
        for awake in (False, True):
            with awake_cpus() if awake else contextlib.nullcontext():
                wire = await run_wire(baud, src)
            wires[f"wire{baud}" + ("_awake" if awake else "")] = {
                **asdict(wire), "of_limit": wire.of_limit}
            print(f"  wire {baud}{', cores kept awake' if awake else ''}: "
                  f"{wire.registers_per_s:.0f} of {wire.limit_per_s:.0f} registers/s",
                  flush=True)
    return wires


def _get(r: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(r, dict) or key not in r:
            return None
        r = r[key]
    return r


def _fmt(template: str, *path: str) -> Callable[[dict[str, Any]], str]:
    def show(r: dict[str, Any]) -> str:
        value = _get(r, *path)
        return "-" if value is None else template.format(value)
    return show


def _fleet(name: str) -> Callable[[dict[str, Any]], str]:
    def show(r: dict[str, Any]) -> str:
        f = r.get(name)
        if not f:
            return "-"
        return (f"{f['kept_up'] * 100:.1f}% kept up, CPU {f['cpu_percent']:.1f}%, "
                f"{f['cpu_us_per_message']:.0f} µs/msg")
    return show


def _overhead(r: dict[str, Any]) -> str:
    c = r.get("commands")
    return "-" if not c else f"{c['overhead_p50_ms']:.2f} / {c['overhead_p99_ms']:.2f}"


def _at_once(r: dict[str, Any]) -> str:
    c = r.get("commands")
    if not c:
        return "-"
    ratio = c.get("at_once_of_raw", c["at_once_per_s"] / c["raw_at_once_per_s"])
    rounds = c.get("at_once_rounds")
    spread = f", rounds {min(rounds):.0%}-{max(rounds):.0%}" if rounds else ""
    return (f"{c['at_once_per_s']:.0f}/s vs raw {c['raw_at_once_per_s']:.0f}/s: {ratio:.0%} "
            f"(median of rounds{spread})")


def _burst(r: dict[str, Any]) -> str:
    b = r.get("burst")
    if not b:
        return "-"
    sent = f" (sent at {b['sent_per_s']:.0f}/s)" if "sent_per_s" in b else ""
    return f"{b['answered_per_s']:.0f}/s{sent}, " + (
        "each answered once" if not b["problems"] else f"PROBLEMS: {b['problems'][:2]}")


def _wire(key: str) -> Callable[[dict[str, Any]], str]:
    def show(r: dict[str, Any]) -> str:
        w = r.get(key)
        return "-" if not w else (f"{w['of_limit']:.1%} ({w['registers_per_s']:.0f} of "
                                  f"{w['limit_per_s']:.0f} reg/s)")
    return show


ROWS: list[Row] = [
    ("100x50 all changing, per-dp topics, QoS 1", "≥99%, ≤30%", _fleet("fleet")),
    ("  RSS MB", "≤80", _fmt("{:.0f}", "fleet", "rss_mb")),
    ("  start-up to 100 online, s", "≤1.5", _fmt("{:.2f}", "fleet", "startup_s")),
    ("  slowest device, polls/s", "1.0", _fmt("{:.2f}", "fleet", "slowest_device_polls_per_s")),
    ("JSON states only", "≤8%", _fmt("CPU {:.1f}%", "json", "cpu_percent")),
    ("static values", "≤8%", _fmt("CPU {:.1f}%", "static", "cpu_percent")),
    ("100x50 all changing, QoS 0", "", _fleet("qos0")),
    ("request->reply overhead p50 / p99, ms", "≤1.0 / ≤3", _overhead),
    ("  bridge p50 / p99, ms", "", lambda r: "-" if not r.get("commands") else
     f"{r['commands']['p50_ms']:.2f} / {r['commands']['p99_ms']:.2f}"),
    ("  raw pymodbus p50 / p99, ms", "", lambda r: "-" if not r.get("commands") else
     f"{r['commands']['raw_p50_ms']:.2f} / {r['commands']['raw_p99_ms']:.2f}"),
    ("  bridge CPU per command, µs (one at a time / 500 queued)", "",
     lambda r: "-" if not r.get("commands") or "cpu_us_at_once" not in r["commands"] else
     f"{r['commands']['cpu_us_sequential']:.0f} / {r['commands']['cpu_us_at_once']:.0f}"),
    ("500 requests at once", "≥60% of raw", _at_once),
    ("10,000-command burst intake", "≥3,000/s", _burst),
    ("wire-timed serial 9600 8E1", "≥97% of wire", _wire("wire9600")),
    ("  the same, cores kept awake (harness.awake_cpus)", "", _wire("wire9600_awake")),
    ("wire-timed serial 38400 8E1", "≥97% of wire", _wire("wire38400")),
    ("  the same, cores kept awake (harness.awake_cpus)", "", _wire("wire38400_awake")),
]


def table(columns: dict[str, dict[str, Any]], peer: dict[str, Any] | None) -> str:
    names = list(columns)
    header = ["scenario", "target", *names]
    lines = [header]
    for label, target, show in ROWS:
        lines.append([label, target, *(show(columns[n]) for n in names)])
    if peer is not None:
        cells = [_fleet("peer")({"peer": peer}) if peer else "not run (no --peer)"]
        lines.append(["peer spicierModbus2mqtt, 10 procs, QoS 0", "", *cells * len(names)])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
           for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.1f}, cross-process wake-up round trip "
            f"{wakeup_us():.0f} µs (harness.wakeup_us)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="source tree of a bridge to compare with")
    parser.add_argument("--peer", default=os.environ.get("PEER") or None,
                        help="spicierModbus2mqtt checkout or git repository")
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--window", type=float, default=10.0, help="fleet window, s")
    parser.add_argument("--json", default="benchmarks/results/perf.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    only = set(args.only.split(","))
    peer_dir = peer_source(args.peer) if args.peer else None  # a bad path fails now
    at_start = machine()
    print(f"machine at start: {at_start}", flush=True)
    trees = {"this tree": REPO}
    if args.baseline:
        trees = {"baseline": Path(args.baseline).resolve(), **trees}
    columns: dict[str, dict[str, Any]] = {name: {} for name in trees}
    started = time.time()
    # Scenario by scenario, each column right after the other: the load of a shared
    # machine changes over the minutes a whole column takes.
    for scenario in (s for s in SCENARIOS if s in only):
        for name, src in trees.items():
            print(f"{scenario}, {name} ({src}):", flush=True)
            columns[name].update(await run_scenario(scenario, src, args.window))
    peer: dict[str, Any] | None = {}
    if peer_dir is not None:
        print("peer:", flush=True)
        peer = (await run_peer(peer_dir, window=args.window)).as_dict()
    at_end = machine()
    print(f"\nmachine at end: {at_end}")
    print(table(columns, peer))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(
        {"machine_at_start": at_start, "machine_at_end": at_end, "started": started,
         "columns": columns, "peer": peer or None}, indent=2) + "\n")
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
