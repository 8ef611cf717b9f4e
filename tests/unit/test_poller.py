"""Availability bookkeeping of one device (pure logic, a fake publisher)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.core.errors import Busy, Expired, ModbusExceptionError, ModbusTimeout, PortUnavailable
from bridge.device.runner import DeviceRunner
from bridge.mqtt.topics import Topics


class Published(list[tuple[str, str]]):
    async def __call__(self, topic: str, payload: bytes | str, *, retain: bool = False) -> bool:
        assert retain
        self.append((topic, str(payload)))
        return True


def runner(offline_after: int = 2) -> tuple[DeviceRunner, Published]:
    published = Published()
    device: Any = SimpleNamespace(id="m")
    return DeviceRunner(device, Topics("modbus"), published, poll_interval=0,
                        offline_after=offline_after, per_point_topics=False), published


@pytest.mark.parametrize(("outcomes", "expected"), [
    ([None], ["online"]),
    ([ModbusTimeout("t")], []),  # one miss of two allowed: not known yet
    ([ModbusTimeout("t"), ModbusTimeout("t")], ["offline"]),
    ([PortUnavailable("gone")], ["offline"]),  # the device file vanished: at once
    ([ModbusExceptionError(2)], ["online"]),  # an exception response proves it is alive
    ([ModbusExceptionError(11)], []),  # a gateway says the unit did not answer
    ([None, ModbusTimeout("t"), None], ["online"]),  # a miss between answers
    ([PortUnavailable("gone"), None], ["offline", "online"]),
    # Busy and expired never reached the unit: they change nothing, either way.
    ([Busy("full"), Expired("late")], []),
    ([PortUnavailable("gone"), Busy("full"), Expired("late")], ["offline"]),
    ([None, Busy("full")], ["online"]),
])
async def test_availability_transitions(outcomes, expected):
    device, published = runner()
    for outcome in outcomes:
        await device.record(outcome)
    assert published == [("modbus/m/availability", text) for text in expected]


async def test_an_unexpected_error_does_not_end_polling(caplog):
    device, _ = runner()
    device.poll_interval = 0.01
    polls = 0

    async def poll_once() -> None:
        nonlocal polls
        polls += 1
        if polls == 1:
            raise ValueError("a bug")
        if polls == 3:
            raise asyncio.CancelledError

    device.poll_once = poll_once  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await device.poll_forever()
    assert polls == 3
    assert "unexpected error while polling" in caplog.text
