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


Transport = SerialLine | TcpEndpoint
