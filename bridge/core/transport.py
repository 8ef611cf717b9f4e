"""Where a device is: a serial line or a TCP endpoint, and its one canonical key.

The key decides which devices share a client (and a queue): the config validator
and the registry both use `Transport.key`, so a spelling that passes validation as
one port can never become two clients at run time (`PLC` and `plc`, a
`/dev/serial/by-id/...` link and its target).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bridge.core.errors import InvalidRequest

# Unit ids on a serial line (and RTU over TCP, a serial line behind a gateway):
# 0 is broadcast (nobody answers) and 248..255 are reserved by the serial-line spec.
SERIAL_UNITS = range(1, 248)
# Modbus TCP proper: the unit id addresses the device itself, and many devices
# answer only on 0 or 255 (Modbus Messaging on TCP/IP guide, 4.4.2).
TCP_UNITS = range(0, 256)


def unit_problem(unit: int, units: range) -> str | None:
    """Why `unit` cannot be addressed on a transport allowing `units`, or None."""
    if unit in units:
        return None
    why = ("Modbus TCP" if units == TCP_UNITS else
           "a serial line or RTU over TCP (0 is broadcast)")
    return f"must be {units.start}..{units.stop - 1} on {why}, got {unit}"


def _require(ok: bool, field: str, problem: str) -> None:
    """Bad transport settings fail here, typed, not later inside pymodbus."""
    if not ok:
        raise InvalidRequest(f"{field}: {problem}", field=field)


def canonical_port(port: str) -> str:
    """The one name of a serial port: links resolved, URLs kept as given."""
    return port if "://" in port else os.path.realpath(port)


@dataclass(frozen=True)
class SerialLine:
    # As configured: a replugged adapter may get a new /dev/ttyUSBn while its
    # /dev/serial/by-id link stays, so the client opens this name, not the target.
    port: str
    baudrate: int = 9600
    parity: str = "E"
    stopbits: int = 1
    bytesize: int = 8

    def __post_init__(self) -> None:
        _require(bool(self.port), "port", "a serial port path is required")
        _require(self.baudrate > 0, "baudrate", f"must be positive, got {self.baudrate}")
        _require(self.parity in ("N", "E", "O"), "parity",
                 f"must be N, E or O, got {self.parity!r}")
        _require(self.stopbits in (1, 2), "stopbits", f"must be 1 or 2, got {self.stopbits}")
        _require(self.bytesize in (5, 6, 7, 8), "bytesize",
                 f"must be 5..8, got {self.bytesize}")

    @property
    def key(self) -> str:
        return canonical_port(self.port)

    @property
    def units(self) -> range:
        return SERIAL_UNITS


@dataclass(frozen=True)
class TcpEndpoint:
    host: str
    port: int = 502
    framer: str = "socket"  # socket (Modbus TCP) | rtu (RTU over TCP)

    def __post_init__(self) -> None:
        _require(bool(self.host), "host", "a host is required")
        _require(1 <= self.port <= 65535, "port", f"must be 1..65535, got {self.port}")
        _require(self.framer in ("socket", "rtu"), "framer",
                 f"must be socket or rtu, got {self.framer!r}")

    @property
    def key(self) -> str:
        # Host names are case-insensitive (RFC 4343): `PLC` and `plc` are one gateway.
        return f"{self.host.lower()}:{self.port}"

    @property
    def units(self) -> range:
        return TCP_UNITS if self.framer == "socket" else SERIAL_UNITS


Transport = SerialLine | TcpEndpoint
