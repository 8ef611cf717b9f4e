"""CLI: `bridge run | check-config | schema | demo | scan | status | eid inspect`
(also `python -m bridge`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
from collections.abc import Coroutine
from typing import Any

from bridge.core.errors import ConfigError

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Modbus RTU/TCP <-> MQTT bridge")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="how much to log (default INFO: transitions, not every poll)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the bridge")
    run.add_argument("--config", help="config file (default: $BRIDGE_CONFIG, else ./bridge.yaml)")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", nargs="?", help="config file (default as for run)")
    sub.add_parser("schema", help="print the config file's JSON Schema")
    demo = sub.add_parser("demo", help="hardware-free demo: simulated bus, local broker, bridge")
    demo.add_argument("--port", type=int, default=1884, help="demo broker port on loopback"
                      " (default 1884, or a free one if taken)")
    demo.add_argument("--duration", type=float, default=0,
                      help="stop after this many seconds (default: until Ctrl-C)")
    eid = sub.add_parser("eid", help="SmartGridready device descriptions (docs/eid.md)")
    eid_sub = eid.add_subparsers(dest="eid_command", required=True)
    inspect = eid_sub.add_parser("inspect", help="print the datapoints an EID file gives")
    inspect.add_argument("file", help="EID XML file")
    inspect.add_argument("--properties", nargs="*", default=[], metavar="K=V",
                         help="values for the EID's {{placeholders}} (slave_id=3)")
    from bridge.operate import add_scan_parser, add_status_parser
    add_scan_parser(sub)
    add_status_parser(sub)
    return parser


def _eid_inspect(path: str, pairs: list[str]) -> int:
    from bridge.sgr.inspect import inspect
    from bridge.sgr.mapping import EidProblems
    from bridge.sgr.parse import EidError

    properties = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            print(f"eid inspect: --properties takes K=V, got {pair!r}", file=sys.stderr)
            return EXIT_CONFIG
        properties[key.strip()] = value.strip()
    try:
        print(inspect(path, properties))
    except EidError as exc:
        print(f"eid inspect: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except EidProblems as exc:
        for loc, message in exc.problems:
            where = ".".join(str(part) for part in loc)
            print(f"eid inspect: {where + ': ' if where else ''}{message}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    # pymodbus logs every unanswered request at ERROR; the bridge reports outcomes itself.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # Start-up builds a few hundred thousand objects that all live on (the config, the
    # datapoints); the collector would scan them again and again meanwhile (~0.3 s of
    # the start-up for 5,000 datapoints). `run` freezes them out of its way once built.
    gc.disable()
    try:
        return _command(args)
    finally:
        gc.enable()


def _command(args: argparse.Namespace) -> int:
    if args.command != "run":
        gc.enable()  # the others (demo, scan, ...) may run for long on plain settings
    from bridge.config.load import config_json_schema, load_config

    if args.command == "schema":
        json.dump(config_json_schema(), sys.stdout, indent=2)
        print()
        return 0
    if args.command == "eid":
        return _eid_inspect(args.file, args.properties)
    if args.command == "scan":
        from bridge.operate import scan_main
        return scan_main(args)
    if args.command == "status":
        from bridge.operate import status_main
        return status_main(args)
    if args.command == "demo":
        from bridge.demo.run import DemoError, run_demo
        try:
            return asyncio.run(run_demo(args.port, args.duration))
        except DemoError as exc:
            print(f"demo: {exc.message}", file=sys.stderr)
            return 1
    path = args.config if args.command == "run" else args.file
    try:
        config = load_config(path)
    except ConfigError as exc:
        print("invalid configuration:", file=sys.stderr)
        for where, message in exc.problems:
            print(f"  {where}: {message}" if where else f"  {message}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        ports = {d.port_key for d in config.devices}
        print(f"ok: {len(config.devices)} devices on {len(ports)} ports")
        for dev in config.devices:
            if dev.eid is not None:
                print(f"  {dev.id}: EID {dev.eid.file}: {len(dev.datapoints)} datapoints,"
                      f" {len(dev.eid.skipped)} EID data points skipped")
                for ref, why in dev.eid.skipped:
                    print(f"    skipped {ref}: {why}")
                for note in dev.eid.notes:
                    print(f"    note: {note}")
        return 0
    from bridge.app import Bridge

    async def serve() -> None:
        bridge = Bridge(config)
        gc.freeze()
        gc.enable()
        await bridge.run()

    run_loop(serve())
    return 0


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop where it is installed (its event loop costs less per callback and per
    socket call than asyncio's), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


if __name__ == "__main__":
    sys.exit(main())
