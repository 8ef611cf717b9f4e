"""Shared fixtures: a simulated RS-485 line (socat pty pair + pymodbus RTU server),
a simulated TCP gateway, and fresh client registries. Broker fixtures live in
tests/mqtt_fixtures.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bridge.modbus.registry import ClientRegistry, SerialLine, TcpEndpoint
from bridge.modbus.simulator import SimBus, SimulatedLine, SimUnit, serve_tcp, tcp_server_port

BAUD = 19200


def meter_unit(unit_id: int = 1) -> SimUnit:
    """Holding 0..9 = unit_id*100 + address; a few coils and inputs."""
    return SimUnit(unit_id,
                   holding={a: unit_id * 100 + a for a in range(10)},
                   input={a: unit_id * 1000 + a for a in range(10)},
                   coil={0: True, 2: True}, discrete={1: True})


@pytest.fixture
async def line() -> AsyncIterator[SimulatedLine]:
    """Units 1 and 2 answer (different contents); unit 3 has no responder."""
    async with SimulatedLine([meter_unit(1), meter_unit(2)], baudrate=BAUD) as sim:
        yield sim


@pytest.fixture
async def registry() -> AsyncIterator[ClientRegistry]:
    reg = ClientRegistry(backoff_max=2.0)
    yield reg
    await reg.close()


@pytest.fixture
def serial_of(line: SimulatedLine) -> Callable[..., SerialLine]:
    def make(**kw: object) -> SerialLine:
        settings: dict[str, object] = {"baudrate": BAUD, "parity": "N"} | kw
        return SerialLine(line.path, **settings)  # type: ignore[arg-type]
    return make


class TcpGateway:
    """A pymodbus TCP server on loopback; stop() makes it refuse, start() brings it back."""

    def __init__(self, units: list[SimUnit], framer: str = "socket") -> None:
        self.bus = SimBus(units)
        self.framer = framer
        self.port = 0
        self.server: object | None = None

    async def start(self) -> None:
        self.server = await serve_tcp(self.bus, "127.0.0.1", self.port, framer=self.framer)
        self.port = tcp_server_port(self.server)  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()  # type: ignore[attr-defined]
            self.server = None

    @property
    def endpoint(self) -> TcpEndpoint:
        return TcpEndpoint("127.0.0.1", self.port, self.framer)


@pytest.fixture
async def gateway() -> AsyncIterator[TcpGateway]:
    gw = TcpGateway([meter_unit(1), meter_unit(2)])
    await gw.start()
    yield gw
    await gw.stop()


async def wait_until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0,
                     what: str = "condition") -> None:
    """Poll `check` until true; fail after `timeout` seconds (no sleeping-and-hoping)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def mosquitto(tmp_path):
    from tests.broker import Mosquitto
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()
