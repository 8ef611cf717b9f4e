"""Received messages not yet taken up: `Inbound` values in a bounded queue.

paho's message callback puts each one here as it is decoded (not through aiomqtt's
queue and `client.messages`, whose iterator created a task and an `asyncio.wait` per
message: a tenth of the bridge's CPU per command); `MqttLink.run` takes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from bridge.core.ratelimit import LogBudget

log = logging.getLogger("bridge.mqtt.link")  # one logger for the whole MQTT link

# Messages received and not yet taken up may hold at most this many bytes (payloads and
# topics), whatever mqtt.inbox_size allows in number.
INBOX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Inbound:
    """A received message, free of aiomqtt and paho types."""

    topic: str
    payload: bytes
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None
    expiry: float | None = None  # MQTT v5 Message Expiry Interval, seconds


class Inbox:
    """Bounded (mqtt.inbox_size messages, INBOX_BYTES bytes). paho acknowledges a QoS 1
    message as it arrives, so a flood cannot be pushed back to the broker; past the
    bound a message is dropped and counted here instead of logged one by one."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.dropped = 0
        self.size = 0  # bytes of the topics and payloads queued
        self._items: deque[Inbound] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._budget = LogBudget(burst=1, period=60.0)  # the count says the rest

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Inbound) -> None:
        weight = _weight(message)
        if len(self._items) >= self.maxsize or self.size + weight > INBOX_BYTES:
            self.dropped += 1
            if self._budget.take("flood") is not None:
                log.warning("inbound flood: %d messages dropped unanswered since start "
                            "(mqtt.inbox_size %d or %d MB is full)", self.dropped,
                            self.maxsize, INBOX_BYTES >> 20)
            return
        self._items.append(message)
        self.size += weight
        self._wake()

    def take(self) -> Inbound | None:
        if not self._items:
            return None
        message = self._items.popleft()
        self.size -= _weight(message)
        return message

    async def wait(self, stop: asyncio.Future[None]) -> None:
        """Until a message is here or `stop` (the connection's end) is done.

        One future, which `put` or the end of `stop` resolves: `asyncio.wait` made a
        waiter and two callbacks of its own and checked both arguments in Python, at
        every wake-up of the link's loop (each command, when they come one at a time)."""
        if self._items:
            return
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        stop.add_done_callback(self._wake)
        try:
            await waiter
        finally:
            stop.remove_done_callback(self._wake)
            self._waiter = None

    def _wake(self, _: object = None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _weight(message: Inbound) -> int:
    return len(message.payload) + len(message.topic) + 64
