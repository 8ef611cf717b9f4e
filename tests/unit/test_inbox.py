"""The inbox's bound (mqtt.inbox_size, INBOX_BYTES): past it a message is dropped,
counted, and logged once per minute, not once each. Through the real path the bridge
reads at the pace it answers (tests/integration/test_load.py), so this is a backstop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.mqtt import inbox as inbox_module
from bridge.mqtt.inbox import Inbound, Inbox


def message(n: int, size: int = 10) -> Inbound:
    return Inbound("modbus/d/request", b"x" * size, False, correlation_data=str(n).encode())


def test_past_the_bound_messages_are_dropped_counted_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    box = Inbox(100)
    for n in range(250):
        box.put(message(n))
    assert (len(box), box.dropped) == (100, 150)
    assert [m.correlation_data for m in (box.take(), box.take())] == [b"0", b"1"]
    box.put(message(999))  # room again
    assert (len(box), box.dropped) == (99, 150)
    flood = [r for r in caplog.records if "inbound flood" in r.getMessage()]
    assert len(flood) == 1 and flood[0].levelno == logging.WARNING


def test_bytes_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox_module, "INBOX_BYTES", 1000)
    box = Inbox(100)
    for n in range(10):
        box.put(message(n, size=200))  # ~280 bytes each with topic and overhead
    assert (len(box), box.dropped) == (3, 7)
    while box.take() is not None:
        pass
    assert box.size == 0


async def test_wait_returns_when_a_message_arrives_or_the_connection_ends() -> None:
    box = Inbox(100)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    loop.call_later(0.01, box.put, message(1))
    await asyncio.wait_for(box.wait(stop), 5)
    assert box.take() == message(1)
    loop.call_later(0.01, stop.set_result, None)
    await asyncio.wait_for(box.wait(stop), 5)
    assert box.take() is None
