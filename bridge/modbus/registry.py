"""The shared client registry: one pymodbus client (and one bus) per port.

Keeps the names and meaning of the SmartGridready commhandler's
`sgr_commhandler.driver.modbus.shared_client` (`register_shared_client`,
`unregister_shared_client`, `ModbusClientWrapper`), without its defects:

- `is_connected` tells the truth: registered, marked connected, transport open;
- a device is marked connected only after the port really opened; otherwise
  `PortUnavailable` says why (no such device file, permission denied, refused);
- the last `disconnect_async`/unregister closes the port (awaited, no `__del__`)
  and drops the entry, so a later register opens it again;
- the key is the canonical path: a `/dev/serial/by-id/...` link and its target
  are one port;
- a second device with a different baudrate, parity, stopbits or bytesize is
  refused with `SettingsConflict` naming both devices and the setting;
- only asyncio locks, never held across a blocking call;
- pymodbus retries and its close-after-misses are off: the bus does retries per
  unit, so one dead unit cannot block or close the port (pymodbus #3012).

A `ClientRegistry` instance is injectable (tests use fresh ones); the seed's
module-level functions are thin entry points over a default instance.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from bridge.core.errors import InvalidRequest, PortUnavailable, SettingsConflict
from bridge.core.ratelimit import LogBudget
from bridge.core.transport import SerialLine, TcpEndpoint, Transport, canonical_port
from bridge.modbus.bus import Bus
from bridge.modbus.calls import char_time_gap, guard_frames

# pymodbus's connect timeout; per-request timeouts are the bus's (per unit).
CONNECT_TIMEOUT = 3.0
# Never let pymodbus close the port because some unit missed replies (#3012).
NEVER_CLOSE = 2**31


class ModbusClientWrapper:
    """One transport shared by several devices (Modbus units)."""

    def __init__(self, identifier: str, client: Any, shared: bool = False, *,
                 transport: Transport | None = None, bus: Bus | None = None) -> None:
        self.identifier = identifier
        self.client = client
        self.shared = shared
        self.transport = transport
        self.registered_devices: set[str] = set()
        self.connected_devices: set[str] = set()
        self._lock = asyncio.Lock()
        self.bus = bus or Bus(identifier, client, self.open_once)

    async def open(self) -> None:
        """Open the transport if it is closed; raises PortUnavailable with the reason."""
        if self.client.connected:
            return
        if isinstance(self.transport, SerialLine) and "://" not in self.transport.port:
            _check_device_file(self.transport.port)
        if not await self.client.connect() or not self.client.connected:
            raise PortUnavailable(f"{self.identifier}: cannot open (connection refused or"
                                  " no such device)")

    async def open_once(self) -> None:
        """The bus's opener: under the same lock as connect_async, so a command that
        arrives while a device is still connecting waits for that open instead of
        starting a second one (which failed it with port_unavailable)."""
        async with self._lock:
            await self.open()

    async def connect_async(self, device_id: str) -> None:
        """Connect the device to the transport; raises PortUnavailable if it cannot open."""
        if device_id not in self.registered_devices:
            raise InvalidRequest(f"device {device_id!r} is not registered at {self.identifier}")
        async with self._lock:
            await self.open()
            self.connected_devices.add(device_id)

    async def disconnect_async(self, device_id: str) -> None:
        """Disconnect the device; the last one closes the port."""
        async with self._lock:
            self.connected_devices.discard(device_id)
            if not self.connected_devices:
                await self.bus.close("port closed: no device connected")
                self.client.close()

    def is_connected(self, device_id: str) -> bool:
        return (device_id in self.registered_devices
                and device_id in self.connected_devices
                and bool(self.client.connected))


def _vanished(path: str) -> Callable[[], str | None] | None:
    """For a device file (not a pyserial URL): says so when it is gone."""
    if "://" in path:
        return None
    return lambda: None if os.path.exists(path) else "no such device (unplugged?)"


def _check_device_file(path: str) -> None:
    """Say why a serial device cannot be opened, before pymodbus hides the reason."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        reason = {
            errno.ENOENT: "no such device (unplugged?)",
            errno.EACCES: "permission denied (is the user in the dialout group?)",
            errno.EBUSY: "device busy (another program has it open)",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise PortUnavailable(f"{path}: {reason}") from None
    os.close(fd)


class ClientRegistry:
    """Transport key -> wrapper. One instance per bridge; tests make their own."""

    def __init__(self, *, queue_size: int = 256, backoff_max: float = 60.0,
                 frame_gap: float | None = None) -> None:
        self.clients: dict[str, ModbusClientWrapper] = {}
        self.queue_size = queue_size
        self.backoff_max = backoff_max
        self.frame_gap = frame_gap  # None: 3.5 character times (serial), 0 (TCP)

    def register(self, transport: Transport, device_id: str, *,
                 frame_gap: float | None = None) -> ModbusClientWrapper:
        """Add a device to a transport, creating the transport on first use."""
        wrapper = self.clients.get(transport.key)
        if wrapper is None:
            wrapper = self._create(transport, frame_gap)
            self.clients[transport.key] = wrapper
        else:
            _check_same_settings(wrapper, transport, device_id)
        wrapper.registered_devices.add(device_id)
        wrapper.shared = len(wrapper.registered_devices) > 1
        return wrapper

    async def unregister(self, key: str, device_id: str) -> None:
        """Remove a device; the last one closes the port and drops the entry."""
        key = self._find(key, device_id)
        wrapper = self.clients.get(key)
        if wrapper is None:
            return
        wrapper.registered_devices.discard(device_id)
        await wrapper.disconnect_async(device_id)
        wrapper.shared = len(wrapper.registered_devices) > 1
        if not wrapper.registered_devices:
            await wrapper.bus.close("port closed: no device registered")
            wrapper.client.close()
            del self.clients[key]

    def _find(self, name: str, device_id: str) -> str:
        """The key of the port `name` (configured, canonical, or host:port) holding it."""
        for key, wrapper in self.clients.items():
            names = {key, getattr(wrapper.transport, "port", None)}
            if device_id in wrapper.registered_devices and (
                    name in names or canonical_port(name) in names):
                return key
        return name

    async def close(self) -> None:
        for key, wrapper in list(self.clients.items()):
            for device_id in list(wrapper.registered_devices):
                await self.unregister(key, device_id)

    def _create(self, transport: Transport, frame_gap: float | None) -> ModbusClientWrapper:
        gap = frame_gap if frame_gap is not None else self.frame_gap
        client: Any
        if isinstance(transport, SerialLine):
            client = AsyncModbusSerialClient(
                transport.port, framer=FramerType.RTU, baudrate=transport.baudrate,
                parity=transport.parity, stopbits=transport.stopbits,
                bytesize=transport.bytesize, timeout=CONNECT_TIMEOUT, retries=0,
                reconnect_delay=0)  # reconnects are the bus's, with back-off
            if gap is None:
                gap = char_time_gap(transport.baudrate, transport.bytesize, transport.parity,
                                    transport.stopbits)
        else:
            framer = FramerType.RTU if transport.framer == "rtu" else FramerType.SOCKET
            client = AsyncModbusTcpClient(
                transport.host, port=transport.port, framer=framer, timeout=CONNECT_TIMEOUT,
                retries=0, reconnect_delay=0)
            gap = gap or 0.0
        client.set_max_no_responses(NEVER_CLOSE)
        guard_frames(client, transport.key, LogBudget(burst=10, period=60.0))
        wrapper = ModbusClientWrapper(transport.key, client, transport=transport)
        wrapper.bus = Bus(transport.key, client, wrapper.open_once, queue_size=self.queue_size,
                          frame_gap=gap, backoff_max=self.backoff_max, units=transport.units,
                          gone=_vanished(transport.port)
                          if isinstance(transport, SerialLine) else None)
        return wrapper


def _check_same_settings(wrapper: ModbusClientWrapper, transport: Transport,
                         device_id: str) -> None:
    existing = wrapper.transport
    assert existing is not None
    first = ", ".join(sorted(wrapper.registered_devices))
    if type(existing) is not type(transport):
        raise SettingsConflict(wrapper.identifier, "transport", first, type(existing).__name__,
                               device_id, type(transport).__name__)
    # Part of the key: the same port or host under another spelling (a link, a case).
    identity = "port" if isinstance(existing, SerialLine) else "host"
    for f in fields(existing):
        if f.name == identity:
            continue
        old, new = getattr(existing, f.name), getattr(transport, f.name)
        if old != new:
            raise SettingsConflict(wrapper.identifier, f.name, first, old, device_id, new)


# -- the seed's module-level API, over a default registry ------------------------

_default_registry = ClientRegistry()


def default_registry() -> ClientRegistry:
    return _default_registry


def register_shared_client(serial_port: str, parity: str, baudrate: int, device_id: str, *,
                           stopbits: int = 1, bytesize: int = 8,
                           frame_gap: float | None = None) -> ModbusClientWrapper:
    """Register a device at a shared serial port; creates the port's client on first use."""
    return _default_registry.register(
        SerialLine(serial_port, baudrate, parity, stopbits, bytesize), device_id,
        frame_gap=frame_gap)


def register_shared_tcp_client(host: str, port: int, device_id: str, *,
                               framer: str = "socket") -> ModbusClientWrapper:
    """Register a device (unit) behind a shared Modbus TCP or RTU-over-TCP endpoint."""
    return _default_registry.register(TcpEndpoint(host, port, framer), device_id)


async def unregister_shared_client(serial_port: str, device_id: str) -> None:
    """Unregister a device; closes the port (awaited) when no device uses it any more."""
    await _default_registry.unregister(serial_port, device_id)
