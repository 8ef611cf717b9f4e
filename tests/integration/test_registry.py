"""The shared client registry: the seed's API with its defects fixed, on a real pty line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from bridge.core.errors import InvalidRequest, PortUnavailable, SettingsConflict
from bridge.core.points import Table
from bridge.modbus import registry as seed_api
from bridge.modbus.registry import ClientRegistry, SerialLine, TcpEndpoint
from bridge.modbus.simulator import SimulatedLine
from tests.conftest import BAUD


async def test_devices_on_one_port_share_one_client(registry, serial_of):
    a = registry.register(serial_of(), "meter")
    b = registry.register(serial_of(), "heatpump")
    assert a is b
    assert a.shared
    assert a.registered_devices == {"meter", "heatpump"}
    assert len(registry.clients) == 1


async def test_link_and_target_are_one_port(registry, serial_of, line, tmp_path):
    by_id = tmp_path / "usb-FTDI_FT232R_A1-if00-port0"
    by_id.symlink_to(line.path)
    a = registry.register(serial_of(), "meter")
    b = registry.register(SerialLine(str(by_id), BAUD, "N"), "heatpump")
    c = registry.register(SerialLine(os.path.realpath(line.path), BAUD, "N"), "io")
    assert a is b is c
    assert a.registered_devices == {"meter", "heatpump", "io"}


@pytest.mark.parametrize(("setting", "value"), [
    ("baudrate", 9600), ("parity", "E"), ("stopbits", 2), ("bytesize", 7),
])
async def test_conflicting_line_settings_are_refused(registry, serial_of, setting, value):
    registry.register(serial_of(), "meter")
    with pytest.raises(SettingsConflict) as err:
        registry.register(serial_of(**{setting: value}), "heatpump")
    message = str(err.value)
    assert "'meter'" in message and "'heatpump'" in message and setting in message
    assert err.value.setting == setting
    wrapper = next(iter(registry.clients.values()))
    assert wrapper.registered_devices == {"meter"}  # the refused device changed nothing


async def test_connect_marks_connected_only_when_the_port_opens(registry, tmp_path):
    wrapper = registry.register(SerialLine(str(tmp_path / "ttyUSB9"), BAUD, "N"), "meter")
    with pytest.raises(PortUnavailable, match="no such device"):
        await wrapper.connect_async("meter")
    assert wrapper.connected_devices == set()
    assert not wrapper.is_connected("meter")


def test_permission_denied_is_named(tmp_path):
    # Root may open anything, so check as an unprivileged user in a child process.
    device = tmp_path / "ttyS7"
    device.write_bytes(b"")
    device.chmod(0o600)
    tmp_path.chmod(0o755)
    code = (
        "import os, sys\n"
        "from bridge.modbus.registry import _check_device_file\n"
        "from bridge.core.errors import PortUnavailable\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n    _check_device_file(sys.argv[1])\n"
        "except PortUnavailable as e:\n    print(e.message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(device)], capture_output=True,
                         text=True, check=True, timeout=30)
    assert "permission denied" in out.stdout


async def test_is_connected_tells_the_truth(registry, serial_of, line):
    wrapper = registry.register(serial_of(), "meter")
    registry.register(serial_of(), "heatpump")
    assert not wrapper.is_connected("meter")  # registered, not connected
    await wrapper.connect_async("meter")
    assert wrapper.is_connected("meter")
    assert not wrapper.is_connected("heatpump")  # registered, never connected
    assert not wrapper.is_connected("stranger")
    await line.unplug()
    await _until(lambda: not wrapper.client.connected)
    assert not wrapper.is_connected("meter")  # marked connected, but the port is gone


async def test_last_unregister_closes_the_port_and_it_can_reopen(registry, serial_of):
    wrapper = registry.register(serial_of(), "meter")
    registry.register(serial_of(), "heatpump")
    await wrapper.connect_async("meter")
    await wrapper.connect_async("heatpump")
    await registry.unregister(serial_of().port, "meter")
    assert wrapper.client.connected  # heatpump still uses it
    await registry.unregister(serial_of().port, "heatpump")
    assert not wrapper.client.connected
    assert registry.clients == {}
    again = registry.register(serial_of(), "meter")
    assert again is not wrapper
    await again.connect_async("meter")
    assert await again.bus.read(1, Table.HOLDING, 0, 2) == [100, 101]


async def test_last_disconnect_closes_the_port(registry, serial_of):
    wrapper = registry.register(serial_of(), "meter")
    await wrapper.connect_async("meter")
    await wrapper.disconnect_async("meter")
    assert not wrapper.client.connected
    assert wrapper.registered_devices == {"meter"}


async def test_fifty_concurrent_devices_never_deadlock_or_mix_frames(registry, serial_of):
    """50 devices (alternating units 1 and 2) connect, read and disconnect at once."""
    async def one(n: int) -> tuple[int, list[int]]:
        device, unit = f"dev{n}", 1 + n % 2
        wrapper = registry.register(serial_of(), device)
        await wrapper.connect_async(device)
        values = await wrapper.bus.read(unit, Table.HOLDING, n % 5, 3, timeout=1.0, retries=1)
        await wrapper.disconnect_async(device)
        return n, list(values)

    results = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(50))), 30)
    for n, values in results:
        unit, start = 1 + n % 2, n % 5
        assert values == [unit * 100 + a for a in range(start, start + 3)], n
    wrapper = next(iter(registry.clients.values()))
    assert wrapper.connected_devices == set()
    assert not wrapper.client.connected  # the last disconnect closed it


async def test_seed_module_functions_use_the_default_registry(line):
    wrapper = seed_api.register_shared_client(line.path, "N", BAUD, "meter")
    assert seed_api.register_shared_client(line.path, "N", BAUD, "heatpump") is wrapper
    try:
        await wrapper.connect_async("meter")
        assert await wrapper.bus.read(2, Table.HOLDING, 3, 1) == [203]
    finally:
        await seed_api.unregister_shared_client(line.path, "meter")
        await seed_api.unregister_shared_client(line.path, "heatpump")
    assert seed_api.default_registry().clients == {}
    assert not wrapper.client.connected


async def test_registries_are_independent(line):
    first, second = ClientRegistry(), ClientRegistry()
    try:
        a = first.register(SerialLine(line.path, BAUD, "N"), "meter")
        b = second.register(SerialLine(line.path, BAUD, "N"), "meter")
        assert a is not b
    finally:
        await first.close()
        await second.close()


async def _until(check):
    from tests.conftest import wait_until
    await wait_until(check, 5.0)


def test_simulated_line_fixture_units(line: SimulatedLine):
    assert set(line.bus.units) == {1, 2}


@pytest.mark.parametrize(("make", "field"), [
    (lambda: SerialLine("/dev/ttyUSB0", 9600, "X"), "parity"),
    (lambda: SerialLine("/dev/ttyUSB0", 0, "N"), "baudrate"),
    (lambda: SerialLine("/dev/ttyUSB0", 9600, "N", stopbits=3), "stopbits"),
    (lambda: SerialLine("/dev/ttyUSB0", 9600, "N", bytesize=9), "bytesize"),
    (lambda: SerialLine("", 9600, "N"), "port"),
    (lambda: TcpEndpoint("", 502), "host"),
    (lambda: TcpEndpoint("gw", 70000), "port"),
    (lambda: TcpEndpoint("gw", 502, "ascii"), "framer"),
])
def test_bad_transport_settings_are_typed_errors(make, field):
    with pytest.raises(InvalidRequest) as err:
        make()
    assert err.value.field == field and field in err.value.message


def test_seed_entry_point_refuses_bad_settings_before_opening_anything():
    with pytest.raises(InvalidRequest, match="parity"):
        seed_api.register_shared_client("/dev/ttyUSB0", "Q", 9600, "meter")


async def test_a_command_during_the_first_open_waits_for_it(registry, serial_of, line):
    """At start-up a device is still connecting when the first command arrives: the
    bus's open waits for that one instead of opening the port a second time (which
    answered the command port_unavailable and delayed the port's next open)."""
    wrapper = registry.register(serial_of(), "m1")
    for _ in range(5):
        connecting = asyncio.create_task(wrapper.connect_async("m1"))
        read = asyncio.create_task(wrapper.bus.read(1, Table.HOLDING, 0, 2, timeout=1.0))
        await connecting
        assert await read == [100, 101]
        await wrapper.disconnect_async("m1")
