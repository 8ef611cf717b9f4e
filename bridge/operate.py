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
