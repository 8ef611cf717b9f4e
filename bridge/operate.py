"""Day-one and day-two commands: `bridge scan` (which units answer on a bus) and
`bridge status` (what the running bridges report on the broker)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from bridge.core.errors import BridgeError, PortUnavailable, RequestError
from bridge.core.scan import DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT, Found, parse_units
from bridge.core.scan import summary_lines as scan_summary
from bridge.core.transport import SerialLine, TcpEndpoint, Transport

EXIT_FOUND, EXIT_NONE, EXIT_USAGE = 0, 1, 2


def add_scan_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scan = sub.add_parser(
        "scan", help="probe unit ids on a serial line or TCP gateway and list who answers",
        description="Probes each unit id with a one-register read. A unit that answers with"
                    " data or with a Modbus exception is there; silence means nobody is."
                    " Stop the bridge first if it uses the same serial port (one program"
                    " can open it at a time), or scan through the running bridge over"
                    " MQTT (op scan on <base>/bridge/request).")
    where = scan.add_mutually_exclusive_group(required=True)
    where.add_argument("--serial", metavar="PATH", help="serial port (/dev/ttyUSB0, ...)")
    where.add_argument("--tcp", metavar="HOST:PORT", help="Modbus TCP device or gateway")
    scan.add_argument("--baudrate", type=int, default=9600)
    scan.add_argument("--parity", default="E", type=str.upper, choices=["N", "E", "O"])
    scan.add_argument("--stopbits", type=int, default=1, choices=[1, 2])
    scan.add_argument("--bytesize", type=int, default=8, choices=[7, 8])
    scan.add_argument("--framer", default="socket", choices=["socket", "rtu"],
                      help="with --tcp: socket (Modbus TCP) or rtu (RTU over TCP)")
    scan.add_argument("--units", default="1-247",
                      help="ids to probe, e.g. 1-247 (default) or 1,2,10-20")
    scan.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                      help=f"seconds to wait for each unit (default {DEFAULT_TIMEOUT:g})")
    scan.add_argument("--json", action="store_true", help="print the report as JSON")


def _transport(args: argparse.Namespace) -> Transport:
    if args.serial:
        return SerialLine(args.serial, args.baudrate, args.parity, args.stopbits, args.bytesize)
    host, sep, port = str(args.tcp).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RequestError(f"--tcp: expected HOST:PORT, got {args.tcp!r}")
    return TcpEndpoint(host.strip("[]"), int(port), args.framer)


class _Bar:
    """A one-line progress bar redrawn in place (only on a terminal)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.found = 0

    def __call__(self, done: int, total: int, latest: Found) -> None:
        self.found += latest.present
        width = 30
        filled = width * done // total
        self.out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
                       f"  unit {latest.unit:>3}  found {self.found}")
        self.out.flush()

    def close(self) -> None:
        self.out.write("\r\033[K")
        self.out.flush()


def scan_main(args: argparse.Namespace, out: TextIO = sys.stdout,
              err: TextIO = sys.stderr) -> int:
    from bridge.modbus.scan import scan_transport

    try:
        if not MIN_TIMEOUT <= args.timeout <= MAX_TIMEOUT:
            raise RequestError(f"--timeout: expected {MIN_TIMEOUT}..{MAX_TIMEOUT} seconds")
        transport = _transport(args)
        units = parse_units(args.units, transport.units, "--units")
    except RequestError as exc:
        print(f"scan: {exc.message}", file=err)
        return EXIT_USAGE
    bar = _Bar(err) if err.isatty() and not args.json else None
    try:
        report = asyncio.run(scan_transport(transport, units, timeout=args.timeout,
                                            progress=bar))
    except PortUnavailable as exc:
        print(f"scan: {exc.message}", file=err)
        return EXIT_NONE
    except BridgeError as exc:
        print(f"scan: {exc.message}", file=err)
        return EXIT_NONE
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        json.dump(report.to_wire(), out)
        out.write("\n")
    else:
        for line in scan_summary(report):
            print(line, file=out)
    return EXIT_FOUND if report.present else EXIT_NONE


# -- bridge status ---------------------------------------------------------------------

EXIT_OFFLINE, EXIT_BROKER = 1, 3


def add_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status", help="print each device's availability, last_seen and last error as the"
                       " bridges on the broker report them; exit 1 if any is offline",
        description="Connects to the broker of the config file and reads the retained"
                    " topics of every bridge instance on its base topic. Exit status: 0 all"
                    " devices online, 1 some device offline or unknown, 2 bad config,"
                    " 3 broker unreachable.")
    status.add_argument("--config", help="config file (default: $BRIDGE_CONFIG, else"
                                         " ./bridge.yaml)")
    status.add_argument("--json", action="store_true", help="print the rows as JSON")
    status.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the broker (default 10)")


def _json(payload: bytes | None) -> object:
    try:
        return json.loads(payload) if payload else None
    except (ValueError, RecursionError):
        return None


def status_rows(base: str, seen: dict[str, bytes], configured: list[str]
                ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(bridges, devices) from retained messages: topic -> payload."""
    from bridge.mqtt.topics import Topics
    topics = Topics(base)
    bridges: dict[str, dict[str, str]] = {}
    owner: dict[str, str] = {}
    for topic, payload in sorted(seen.items()):
        for leaf in ("state", "info"):
            instance = topics.bridge_of(topic, leaf)
            if instance is None:
                continue
            row = bridges.setdefault(instance, {"instance": instance, "state": "unknown",
                                                "started_at": "", "devices": ""})
            if leaf == "state":
                row["state"] = payload.decode("utf-8", "replace")
                continue
            info = _json(payload)
            if isinstance(info, dict):
                row["started_at"] = str(info.get("started_at", ""))
                devices = [d for d in info.get("devices", []) if isinstance(d, str)]
                row["devices"] = str(len(devices))
                for device in devices:
                    owner.setdefault(device, instance)
    names = list(dict.fromkeys([*configured, *owner]))
    rows = []
    for device in names:
        prefix = f"{base}/{device}"
        availability = seen.get(prefix + "/availability", b"").decode("utf-8", "replace")
        state = _json(seen.get(prefix))
        response = _json(seen.get(prefix + "/response"))
        error = ""
        if isinstance(response, dict) and response.get("ok") is False:
            err = response.get("error")
            if isinstance(err, dict):
                error = f"{err.get('code', '?')}: {err.get('message', '')}"[:60]
                error += f" ({response.get('ts', '')})"
        rows.append({"device": device, "instance": owner.get(device, "-"),
                     "availability": availability or "unknown",
                     "last_seen": str(state.get("last_seen") or "-")
                     if isinstance(state, dict) else "-",
                     "last_error": error or "-"})
    return list(bridges.values()), rows


def table(rows: list[dict[str, str]], columns: list[str]) -> list[str]:
    widths = [max([len(c), *(len(r[c]) for r in rows)]) for c in columns]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(r[c].ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
              for r in rows]
    return lines


def status_main(args: argparse.Namespace, out: TextIO = sys.stdout,
                err: TextIO = sys.stderr) -> int:
    from bridge.config.load import load_config
    from bridge.core.errors import ConfigError
    from bridge.mqtt.status import collect_retained, status_filters
    from bridge.mqtt.topics import Topics

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print("invalid configuration:", file=err)
        for where, message in exc.problems:
            print(f"  {where}: {message}" if where else f"  {message}", file=err)
        return EXIT_USAGE
    base = config.mqtt.base_topic
    try:
        seen = asyncio.run(collect_retained(config.mqtt, status_filters(Topics(base)),
                                            connect_timeout=args.timeout))
    except PortUnavailable as exc:
        print(f"status: {exc.message}", file=err)
        return EXIT_BROKER
    bridges, rows = status_rows(base, seen, [d.id for d in config.devices])
    if args.json:
        json.dump({"bridges": bridges, "devices": rows}, out, indent=2)
        out.write("\n")
    else:
        if bridges:
            for line in table(bridges, ["instance", "state", "started_at", "devices"]):
                print(line, file=out)
            print(file=out)
        for line in table(rows, ["device", "instance", "availability", "last_seen",
                                 "last_error"]):
            print(line, file=out)
    offline = [r["device"] for r in rows if r["availability"] != "online"]
    if offline:
        print(f"{len(offline)} of {len(rows)} devices not online: {', '.join(offline)}",
              file=err)
        return EXIT_OFFLINE
    return EXIT_FOUND
