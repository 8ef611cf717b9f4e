"""aiomqtt's incoming queue, bounded in messages and bytes."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt

from bridge.core.ratelimit import LogBudget

log = logging.getLogger("bridge.mqtt.link")  # one logger for the whole MQTT link

# Messages received and not yet taken up may hold at most this many bytes (payloads and
# topics), whatever mqtt.inbox_size allows in number.
INBOX_BYTES = 64 * 1024 * 1024


class Inbox(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue, bounded (mqtt.inbox_size messages, INBOX_BYTES bytes).
    paho acknowledges a QoS 1 message as it arrives, so a flood cannot be pushed back
    to the broker; past the bound a message is dropped and counted here instead of
    logged one by one."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.dropped = 0
        self.size = 0  # bytes of the topics and payloads queued
        self._budget = LogBudget(burst=1, period=60.0)  # the count says the rest

    def put_nowait(self, item: aiomqtt.Message) -> None:
        if self.full() or self.size + _weight(item) > INBOX_BYTES:
            self.dropped += 1
            if self._budget.take("flood") is not None:
                log.warning("inbound flood: %d messages dropped unanswered on this "
                            "connection (mqtt.inbox_size %d or %d MB is full)", self.dropped,
                            self.maxsize, INBOX_BYTES >> 20)
            return
        super().put_nowait(item)

    def _put(self, item: aiomqtt.Message) -> None:
        self.size += _weight(item)
        super()._put(item)

    def _get(self) -> aiomqtt.Message:
        item: aiomqtt.Message = super()._get()
        self.size -= _weight(item)
        return item


def _weight(message: aiomqtt.Message) -> int:
    payload = message.payload
    size = len(payload) if isinstance(payload, bytes | bytearray | str) else 16
    return size + len(message.topic.value) + 64
