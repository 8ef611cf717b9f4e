"""A simulated Modbus line: several units behind one pymodbus server, with faults.

Used by the demo and by the tests. The far end of a socat pty pair (the RS-485
line) or a loopback TCP port runs a real pymodbus server; this module supplies
its datastore, and per unit a fault `mode`:

- ``ok``: answers normally; ``slow``: answers after `delay` seconds;
- ``silent``: never answers (an absent or dead unit; pymodbus's own server
  would answer exception 4 for an unknown unit, so we drop the request);
- ``exception``: answers every request with exception `exception_code`;
- ``bad_crc``: answers with a corrupted CRC; ``truncated``: answers half a frame.

`holes` are address ranges that answer exception 2 (illegal data address), as
real devices do for gaps in their register map.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

# function code -> table
_TABLE_OF_FC = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 3: "holding", 6: "holding",
                16: "holding", 22: "holding", 23: "holding", 4: "input"}


@dataclass
class SimUnit:
    """One simulated Modbus unit: four sparse tables and a fault mode."""

    unit_id: int
    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    coil: dict[int, bool] = field(default_factory=dict)
    discrete: dict[int, bool] = field(default_factory=dict)
    size: int = 10000  # addresses 0..size-1 exist in every table
    holes: list[tuple[str, int, int]] = field(default_factory=list)  # (table, start, end)
    mode: str = "ok"
    delay: float = 0.0
    exception_code: int = 4
    requests: int = 0  # requests this unit saw (answered or not)

    def table(self, name: str) -> dict[int, Any]:
        tables: dict[str, dict[int, Any]] = {"holding": self.holding, "input": self.input,
                                             "coil": self.coil, "discrete": self.discrete}
        return tables[name]

    def _illegal(self, table: str, address: int, count: int) -> bool:
        if address < 0 or address + count > self.size:
            return True
        return any(t == table and address < end and start < address + count
                   for t, start, end in self.holes)

    def get(self, table: str, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        if self._illegal(table, address, count):
            return ExcCodes.ILLEGAL_ADDRESS
        store = self.table(table)
        default: int | bool = False if table in ("coil", "discrete") else 0
        return [store.get(a, default) for a in range(address, address + count)]

    def set(self, table: str, address: int, values: Sequence[int] | Sequence[bool]
            ) -> ExcCodes | None:
        if table in ("input", "discrete"):
            return ExcCodes.ILLEGAL_FUNCTION
        if self._illegal(table, address, len(values)):
            return ExcCodes.ILLEGAL_ADDRESS
        store = self.table(table)
        for offset, value in enumerate(values):
            store[address + offset] = value
        return None

    def set_float32(self, table: str, address: int, value: float) -> None:
        """Store a big-endian float32 (word order big), as most meters do."""
        import struct
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        store = self.table(table)
        store[address], store[address + 1] = hi, lo


class SimBus(ModbusServerContext):
    """The datastore a pymodbus server sees: the units on one simulated line.

    Takes pymodbus's "old simulator" path (a context it passes calls through to)
    so each call can be delayed, dropped or answered with an exception.
    """

    def __init__(self, units: Sequence[SimUnit] = ()) -> None:
        # Deliberately not calling super().__init__: it only builds pymodbus's own
        # datastore (and logs a deprecation warning); we are the datastore.
        self.old_simulator = True
        self.simdevices = []
        self.units: dict[int, SimUnit] = {u.unit_id: u for u in units}
        # The unit each request task is answering for. pymodbus's server stamps an
        # answer with the unit id of the *latest* request, so a slow unit's late answer
        # would carry the next unit's id; a real unit always sends its own id. The
        # server handles each request in its own task and sends the answer from it.
        self._answering: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = \
            weakref.WeakKeyDictionary()

    def add(self, unit: SimUnit) -> SimUnit:
        self.units[unit.unit_id] = unit
        return unit

    async def _unit(self, device_id: int) -> SimUnit:
        unit = self.units.get(device_id)
        if unit is None:
            raise NoSuchIdException(f"no unit {device_id}")  # dropped: ignore_missing_devices
        unit.requests += 1
        if unit.mode == "silent":
            raise NoSuchIdException(f"unit {device_id} is silent")
        if unit.mode == "slow" and unit.delay:
            await asyncio.sleep(unit.delay)
        task = asyncio.current_task()
        if task is not None:
            self._answering[task] = device_id
        return unit

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        unit = await self._unit(device_id)
        if unit.mode == "exception":
            return ExcCodes(unit.exception_code)
        return unit.get(_TABLE_OF_FC[func_code], address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        unit = await self._unit(device_id)
        if unit.mode == "exception":
            return ExcCodes(unit.exception_code)
        return unit.set(_TABLE_OF_FC[func_code], address, values)

    def device_ids(self) -> list[int]:
        return list(self.units)

    def trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Corrupt outgoing frames of units in bad_crc / truncated mode (RTU: byte 0 is
        the unit)."""
        if not sending or not data:
            return data
        task = asyncio.current_task()
        own = self._answering.pop(task, None) if task is not None else None
        if own is not None and data[0] != own:  # see _answering: its own id back
            body = bytes([own]) + data[1:-2]
            data = body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
        unit = self.units.get(data[0])
        if unit is not None and unit.mode == "bad_crc":
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        if unit is not None and unit.mode == "truncated":
            return data[: max(1, len(data) // 2)]
        return data


async def serve_rtu(bus: SimBus, port: str, baudrate: int = 19200) -> ModbusSerialServer:
    """A pymodbus RTU server on a serial port (the far end of a pty pair)."""
    server = ModbusSerialServer(bus, framer=FramerType.RTU, port=port, baudrate=baudrate,
                                ignore_missing_devices=True, trace_packet=bus.trace_packet)
    await server.serve_forever(background=True)
    return server


async def serve_tcp(bus: SimBus, host: str = "127.0.0.1", port: int = 0,
                    framer: str = "socket") -> ModbusTcpServer:
    """A pymodbus TCP server on loopback; framer "rtu" serves RTU over TCP."""
    server = ModbusTcpServer(
        bus, framer=FramerType.RTU if framer == "rtu" else FramerType.SOCKET,
        address=(host, port), ignore_missing_devices=True,
        trace_packet=bus.trace_packet if framer == "rtu" else None)
    await server.serve_forever(background=True)
    return server


def tcp_server_port(server: ModbusTcpServer) -> int:
    """The port a server bound to port 0 got."""
    sockets = cast(Any, server.transport).sockets  # an asyncio Server, typed loosely
    return int(sockets[0].getsockname()[1])


class PtyLine:
    """An RS-485 line as a socat pty pair: `client_path` for the bridge, `server_path`
    for the simulator. `unplug()` kills socat (the device files vanish, as with a USB
    adapter pulled out); `plug()` starts it again with the same link names."""

    def __init__(self, directory: str | os.PathLike[str] | None = None,
                 name: str = "bridge-end") -> None:
        self._tmp = None if directory else tempfile.mkdtemp(prefix="modbus-line-")
        self.dir = Path(directory or self._tmp or ".")
        self.client_path = str(self.dir / name)
        self.server_path = str(self.dir / "device-end")
        self._proc: subprocess.Popen[bytes] | None = None

    def plug(self, timeout: float = 5.0) -> None:
        if shutil.which("socat") is None:
            raise RuntimeError("socat is not installed (apt-get install socat)")
        self._proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.client_path}",
             f"pty,raw,echo=0,link={self.server_path}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_for(lambda: os.path.exists(self.client_path) and os.path.exists(self.server_path),
                  timeout, "socat did not create the pty links")

    def unplug(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        for path in (self.client_path, self.server_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def close(self) -> None:
        self.unplug()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> PtyLine:
        self.plug()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SimulatedLine:
    """A whole simulated RS-485 line: pty pair, units, and the RTU server on the far end.

    `await unplug()` is a USB adapter pulled out (device files vanish);
    `await replug()` brings it back under the same names with the same units.
    """

    def __init__(self, units: Sequence[SimUnit], baudrate: int = 19200,
                 directory: str | None = None, name: str = "bridge-end") -> None:
        self.bus = SimBus(units)
        self.baudrate = baudrate
        self.pty = PtyLine(directory, name)
        self.server: ModbusSerialServer | None = None

    @property
    def path(self) -> str:
        return self.pty.client_path

    def unit(self, unit_id: int) -> SimUnit:
        return self.bus.units[unit_id]

    async def start(self) -> SimulatedLine:
        self.pty.plug()
        self.server = await serve_rtu(self.bus, self.pty.server_path, self.baudrate)
        return self

    async def unplug(self) -> None:
        if self.server is not None:
            await self.server.shutdown()  # type: ignore[no-untyped-call]
            self.server = None
        self.pty.unplug()

    async def replug(self) -> None:
        await self.unplug()
        await self.start()

    async def stop(self) -> None:
        await self.unplug()
        self.pty.close()

    async def __aenter__(self) -> SimulatedLine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _wait_for(check: Any, timeout: float, message: str) -> None:
    import time
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise RuntimeError(message)
        time.sleep(0.01)


@contextlib.contextmanager
def quiet_pymodbus() -> Iterator[None]:
    """pymodbus logs every dropped request at ERROR; keep the demo's output readable."""
    import logging
    logger = logging.getLogger("pymodbus")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)
