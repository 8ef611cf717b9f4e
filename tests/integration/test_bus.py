"""The per-port bus: ordering, deadlines, bounds, back-off and error translation,
on a real pty line with a pymodbus RTU server on the far end."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.core.errors import (
    Busy,
    Expired,
    InvalidRequest,
    ModbusExceptionError,
    ModbusTimeout,
    PortUnavailable,
)
from bridge.core.points import Table
from bridge.modbus.bus import Priority
from bridge.modbus.calls import char_time_gap
from bridge.modbus.registry import CONNECT_TIMEOUT
from tests.conftest import meter_unit, wait_until

DEAD = 3  # no responder on the line


@pytest.fixture
async def port(registry, serial_of):
    wrapper = registry.register(serial_of(), "meter")
    await wrapper.connect_async("meter")
    return wrapper.bus


@pytest.mark.parametrize(("baud", "bytesize", "parity", "stopbits", "expected_ms"), [
    (9600, 8, "N", 1, 3.5 * 10 / 9600 * 1000),
    (9600, 8, "E", 1, 3.5 * 11 / 9600 * 1000),
    (19200, 8, "N", 2, 3.5 * 11 / 19200 * 1000),
    (38400, 8, "E", 1, 1.75),
    (115200, 8, "N", 1, 1.75),
])
def test_default_frame_gap_is_three_and_a_half_characters(baud, bytesize, parity, stopbits,
                                                          expected_ms):
    assert char_time_gap(baud, bytesize, parity, stopbits) * 1000 == pytest.approx(expected_ms)


async def test_reads_each_table(port):
    assert await port.read(1, Table.HOLDING, 0, 3) == [100, 101, 102]
    assert await port.read(2, Table.INPUT, 1, 2) == [2001, 2002]
    assert await port.read(1, Table.COIL, 0, 3) == [True, False, True]
    assert await port.read(1, Table.DISCRETE, 0, 2) == [False, True]


async def test_writes_each_kind(port, line):
    await port.write(1, Table.HOLDING, 20, [7], single=True)
    await port.write(1, Table.HOLDING, 21, [8, 9])
    await port.write(2, Table.COIL, 5, [True], single=True)
    await port.write(2, Table.COIL, 6, [True, False, True])
    assert [line.unit(1).holding[a] for a in (20, 21, 22)] == [7, 8, 9]
    assert [line.unit(2).coil[a] for a in (5, 6, 7, 8)] == [True, True, False, True]


async def test_commands_go_ahead_of_polls(port, line):
    line.unit(1).mode, line.unit(1).delay = "slow", 0.3
    order: list[str] = []

    async def req(tag: str, priority: Priority) -> None:
        await port.read(2, Table.HOLDING, 0, 1, priority=priority, timeout=1.0)
        order.append(tag)

    blocker = asyncio.create_task(port.read(1, Table.HOLDING, 0, 1, timeout=1.0))
    await wait_until(lambda: line.unit(1).requests == 1, what="blocker on the wire")
    tasks = [asyncio.create_task(req("poll1", Priority.POLL)),
             asyncio.create_task(req("poll2", Priority.POLL))]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(req("cmd1", Priority.COMMAND)),
              asyncio.create_task(req("cmd2", Priority.COMMAND))]
    await asyncio.gather(blocker, *tasks)
    assert order == ["cmd1", "cmd2", "poll1", "poll2"]


async def test_expired_items_never_reach_the_bus(port, line):
    line.unit(1).mode, line.unit(1).delay = "slow", 0.3
    blocker = asyncio.create_task(port.read(1, Table.HOLDING, 0, 1, timeout=1.0))
    await wait_until(lambda: line.unit(1).requests == 1, what="blocker on the wire")
    before = line.unit(2).requests
    with pytest.raises(Expired):
        await port.read(2, Table.HOLDING, 0, 1, deadline=time.monotonic() + 0.05)
    await blocker
    assert line.unit(2).requests == before
    assert port.stats.errors["expired"] == 1


async def test_a_full_queue_refuses_at_once(port, line):
    port.queue_size = 4
    line.unit(1).mode, line.unit(1).delay = "slow", 0.3
    blocker = asyncio.create_task(port.read(1, Table.HOLDING, 0, 1, timeout=1.0))
    await wait_until(lambda: line.unit(1).requests == 1, what="blocker on the wire")
    # Two units, two waiting each: their shares (4 // 2) and the queue are full.
    queued = [asyncio.create_task(port.read(unit, Table.HOLDING, a, 1, timeout=1.0))
              for unit, a in ((2, 0), (2, 1), (1, 2), (1, 3))]
    await asyncio.sleep(0)
    with pytest.raises(Busy, match="full"):
        await port.read(2, Table.HOLDING, 5, 1)
    assert [await t for t in queued] == [[200], [201], [102], [103]]
    await blocker


async def test_one_unit_cannot_take_the_whole_queue(port, line):
    port.queue_size = 4
    line.unit(1).mode, line.unit(1).delay = "slow", 0.1
    await port.read(2, Table.HOLDING, 0, 1)  # unit 2 is known to the port
    blocker = asyncio.create_task(port.read(1, Table.HOLDING, 0, 1, timeout=1.0))
    await wait_until(lambda: line.unit(1).requests == 1, what="blocker on the wire")
    queued = [asyncio.create_task(port.read(1, Table.HOLDING, a, 1, timeout=1.0))
              for a in (1, 2)]
    await asyncio.sleep(0)
    with pytest.raises(Busy, match="share"):
        await port.read(1, Table.HOLDING, 3, 1)
    assert await port.read(2, Table.HOLDING, 1, 1) == [201]  # room left for unit 2
    assert [await t for t in queued] == [[101], [102]]
    await blocker


async def test_a_dead_unit_times_out_and_never_closes_the_port(port, line):
    for _ in range(12):  # more than pymodbus's retries+3 that used to close the port
        with pytest.raises(ModbusTimeout, match="did not answer"):
            await port.read(DEAD, Table.HOLDING, 0, 1, timeout=0.05)
    assert port.client.connected
    assert await port.read(1, Table.HOLDING, 0, 1) == [100]
    assert port.health(DEAD).failures == 12


async def test_dead_unit_retries_wait_behind_healthy_units(port, line):
    dead = asyncio.create_task(port.read(DEAD, Table.HOLDING, 0, 1, timeout=0.2, retries=1,
                                         priority=Priority.POLL))
    await wait_until(lambda: port.health(DEAD).failures == 1, what="first miss")
    healthy = await asyncio.gather(*(port.read(1, Table.HOLDING, a, 1) for a in range(5)))
    assert healthy == [[100], [101], [102], [103], [104]]
    assert port.health(DEAD).failures == 1  # its retry did not jump ahead
    with pytest.raises(ModbusTimeout):
        await dead
    assert port.health(DEAD).failures == 2
    assert port.health(DEAD).backing_off(time.monotonic())


async def test_polls_of_a_backing_off_unit_wait_but_commands_are_tried(port):
    with pytest.raises(ModbusTimeout):
        await port.read(DEAD, Table.HOLDING, 0, 1, timeout=0.1)
    port.health(DEAD).ready_at = time.monotonic() + 60  # far in the future
    poll = asyncio.create_task(port.read(DEAD, Table.HOLDING, 0, 1, priority=Priority.POLL,
                                         timeout=0.1))
    with pytest.raises(ModbusTimeout):  # a command's first attempt still goes out
        await port.read(DEAD, Table.HOLDING, 0, 1, timeout=0.1)
    assert await port.read(1, Table.HOLDING, 0, 1) == [100]
    assert not poll.done()  # still waiting for the back-off to end
    poll.cancel()


async def test_exception_responses_are_typed_and_keep_the_unit_healthy(port, line):
    line.unit(2).mode, line.unit(2).exception_code = "exception", 6
    with pytest.raises(ModbusExceptionError) as err:
        await port.read(2, Table.HOLDING, 0, 1)
    assert err.value.exception_code == 6
    assert err.value.to_wire() == {"code": "modbus_exception", "exception_code": 6,
                                   "message": "server device busy"}
    assert port.health(2).failures == 0
    with pytest.raises(ModbusExceptionError) as err:
        await port.read(1, Table.HOLDING, 9999, 5)
    assert err.value.exception_code == 2


@pytest.mark.parametrize("mode", ["bad_crc", "truncated"])
async def test_garbage_on_the_line_is_a_timeout_and_others_are_unaffected(port, line, mode):
    line.unit(2).mode = mode
    with pytest.raises(ModbusTimeout):
        await port.read(2, Table.HOLDING, 0, 4, timeout=0.2)
    assert port.client.connected
    assert await port.read(1, Table.HOLDING, 0, 4) == [100, 101, 102, 103]
    line.unit(2).mode = "ok"
    assert await port.read(2, Table.HOLDING, 0, 1, timeout=0.5, retries=2) == [200]


async def test_a_slow_unit_does_not_poison_the_next_reply(port, line):
    """A late reply must not be taken as the answer to the next request (pymodbus #2636)."""
    line.unit(2).mode, line.unit(2).delay = "slow", 0.3
    with pytest.raises(ModbusTimeout):
        await port.read(2, Table.HOLDING, 0, 2, timeout=0.15)
    assert await port.read(1, Table.HOLDING, 5, 2) == [105, 106]


async def test_a_unit_timeout_longer_than_pymodbus_s_own_is_kept(port, line):
    """pymodbus times out each reply after its connect timeout (3 s) on its own: a
    gateway that needs 3.5 s, configured with timeout 4, got a timeout at 3 s."""
    unit = line.unit(1)
    unit.mode, unit.delay = "slow", CONNECT_TIMEOUT + 0.5
    assert await port.read(1, Table.HOLDING, 0, 1, timeout=CONNECT_TIMEOUT + 1.5) == [100]
    unit.mode, unit.delay = "slow", 0.5
    with pytest.raises(ModbusTimeout, match=r"within 0\.2 s"):  # and a short one still holds
        await port.read(1, Table.HOLDING, 0, 1, timeout=0.2)


async def test_unplug_fails_fast_and_replug_recovers_without_a_restart(port, line):
    assert await port.read(1, Table.HOLDING, 0, 1) == [100]
    await line.unplug()
    with pytest.raises(PortUnavailable, match=r"no such device|connection lost"):
        await port.read(1, Table.HOLDING, 0, 1)
    started = time.monotonic()
    with pytest.raises(PortUnavailable):
        await port.read(2, Table.HOLDING, 0, 1)
    assert time.monotonic() - started < 0.5  # fails at once, no timeout wait
    await line.replug()

    async def reads() -> bool:
        try:
            return await port.read(1, Table.HOLDING, 0, 1) == [100]
        except (PortUnavailable, ModbusTimeout):  # the replugged line may miss one frame
            return False
    await wait_until(reads, timeout=15, what="port reopened")


async def test_tcp_gateway_shares_one_client_for_several_units(registry, gateway):
    a = registry.register(gateway.endpoint, "meter")
    b = registry.register(gateway.endpoint, "heatpump")
    assert a is b
    await a.connect_async("meter")
    assert await a.bus.read(1, Table.HOLDING, 0, 2) == [100, 101]
    assert await a.bus.read(2, Table.INPUT, 0, 1) == [2000]


async def test_tcp_refused_then_recovers(registry, gateway):
    wrapper = registry.register(gateway.endpoint, "meter")
    await wrapper.connect_async("meter")
    await gateway.stop()
    await wait_until(lambda: not wrapper.client.connected, what="connection dropped")
    with pytest.raises(PortUnavailable):
        await wrapper.bus.read(1, Table.HOLDING, 0, 1)
    await gateway.start()

    async def reads() -> bool:
        try:
            return await wrapper.bus.read(1, Table.HOLDING, 0, 1) == [100]
        except PortUnavailable:
            return False
    await wait_until(reads, timeout=15, what="reconnect")


async def test_rtu_over_tcp_with_a_silent_unit(registry):
    from tests.conftest import TcpGateway
    gw = TcpGateway([meter_unit(1)], framer="rtu")
    await gw.start()
    try:
        wrapper = registry.register(gw.endpoint, "meter")
        await wrapper.connect_async("meter")
        assert await wrapper.bus.read(1, Table.HOLDING, 1, 1) == [101]
        for _ in range(6):
            with pytest.raises(ModbusTimeout):
                await wrapper.bus.read(DEAD, Table.HOLDING, 0, 1, timeout=0.05)
        assert wrapper.client.connected
        assert await wrapper.bus.read(1, Table.HOLDING, 2, 1) == [102]
    finally:
        await gw.stop()


async def test_server_busy_is_retried_after_a_pause_then_reported(port, line):
    unit = line.unit(2)
    unit.mode, unit.exception_code = "exception", 6
    before = unit.requests
    with pytest.raises(ModbusExceptionError) as err:
        await port.read(2, Table.HOLDING, 0, 1, timeout=0.05, retries=2)
    assert err.value.exception_code == 6
    assert unit.requests - before == 3  # the first try and two retries
    assert port.health(2).failures == 0  # busy is alive, not dead


async def test_acknowledge_is_success_for_a_write_but_not_for_a_read(port, line):
    line.unit(2).mode, line.unit(2).exception_code = "exception", 5
    await port.write(2, Table.HOLDING, 0, [7], single=True)  # accepted, no error
    with pytest.raises(ModbusExceptionError) as err:
        await port.read(2, Table.HOLDING, 0, 1)
    assert err.value.exception_code == 5


@pytest.mark.parametrize(("call", "field"), [
    (lambda bus: bus.read(0, Table.HOLDING, 0, 1), "unit"),  # broadcast: nobody answers
    (lambda bus: bus.read(248, Table.HOLDING, 0, 1), "unit"),
    (lambda bus: bus.read(-1, Table.HOLDING, 0, 1), "unit"),
    (lambda bus: bus.read(1, Table.HOLDING, -1, 1), "address"),
    (lambda bus: bus.read(1, Table.HOLDING, 65536, 1), "address"),
    (lambda bus: bus.read(1, Table.HOLDING, 0, 0), "count"),
    (lambda bus: bus.read(1, Table.HOLDING, 0, 126), "count"),
    (lambda bus: bus.read(1, Table.COIL, 0, 2001), "count"),
    (lambda bus: bus.read(1, Table.INPUT, 65535, 2), "count"),
    (lambda bus: bus.write(1, Table.HOLDING, 0, []), "values"),
    (lambda bus: bus.write(1, Table.HOLDING, 0, [0] * 124), "values"),
    (lambda bus: bus.write(1, Table.HOLDING, 0, [65536]), "values"),
    (lambda bus: bus.write(1, Table.HOLDING, 0, [-1], single=True), "values"),
    (lambda bus: bus.write(1, Table.INPUT, 0, [1]), "table"),
    (lambda bus: bus.write(0, Table.COIL, 0, [True]), "unit"),
])
async def test_bad_arguments_are_typed_errors_and_send_nothing(port, line, call, field):
    before = line.unit(1).requests
    with pytest.raises(InvalidRequest) as err:
        await call(port)
    assert err.value.field == field
    assert line.unit(1).requests == before
    assert await port.read(1, Table.HOLDING, 0, 1) == [100]  # the port is fine


@pytest.mark.parametrize("unit", [0, 255, 248])
async def test_modbus_tcp_addresses_units_0_to_255(registry, unit):
    """Modbus TCP devices often answer only on unit 0 or 255 (the device itself)."""
    from bridge.core.transport import TcpEndpoint
    from tests.conftest import TcpGateway
    gw = TcpGateway([meter_unit(unit)])
    await gw.start()
    try:
        wrapper = registry.register(TcpEndpoint("127.0.0.1", gw.port), "tcpdev")
        await wrapper.connect_async("tcpdev")
        assert await wrapper.bus.read(unit, Table.HOLDING, 0, 2) == [unit * 100, unit * 100 + 1]
        await wrapper.bus.write(unit, Table.HOLDING, 3, [42], single=True)
        assert gw.bus.units[unit].holding[3] == 42
    finally:
        await gw.stop()


@pytest.mark.parametrize("unit", [0, 248, 255])
async def test_rtu_over_tcp_keeps_serial_unit_ids(registry, unit):
    from bridge.core.transport import TcpEndpoint
    from tests.conftest import TcpGateway
    gw = TcpGateway([meter_unit(1)], framer="rtu")
    await gw.start()
    try:
        wrapper = registry.register(TcpEndpoint("127.0.0.1", gw.port, "rtu"), "rtudev")
        with pytest.raises(InvalidRequest, match=r"1\.\.247 on a serial line") as err:
            await wrapper.bus.read(unit, Table.HOLDING, 0, 1)
        assert err.value.field == "unit"
        assert gw.bus.units[1].requests == 0
    finally:
        await gw.stop()


async def test_back_off_survives_thousands_of_failures(port, line):
    """2**failures overflowed float after ~1,000 failures: each later failure was an
    unexpected error (with a traceback) instead of a timeout."""
    port.health(3).failures = 5000
    with pytest.raises(ModbusTimeout):
        await port.read(3, Table.HOLDING, 0, 1, timeout=0.05)
    assert port.health(3).failures == 5001
