"""Outgoing QoS 0 and 1 PUBLISH packets, written straight to the socket.

paho's `publish()` builds per message an MQTTMessageInfo (with a threading
Condition), v5 Properties, a queued-packet dict and a thread-safe wake-up of the
event loop, and decodes each PUBACK into ReasonCode and Properties objects: at
5,000 messages/s that was about half the bridge's CPU. Here a PUBLISH is a few
bytes concatenated and handed to `BatchingSocket`, and a PUBACK is two bytes
looked up in a dict. paho still owns the connection (CONNECT, SUBSCRIBE, incoming
messages, keepalive) and QoS 2, and lends us its packet ids so ours never clash.

The window: at most `window` QoS 1 messages unacknowledged (the broker's MQTT v5
Receive Maximum, else 20, paho's default), the rest wait in order in a backlog,
bounded by MAX_WAITING (a stalled broker must not grow memory without limit).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

MAX_WAITING = 100_000  # unacknowledged + backlog: a full inbox answered twice is normal
DEFAULT_WINDOW = 20
MAX_WINDOW = 10_000  # well below the 65,535 packet ids, which paho shares with us
_CORRELATION_DATA = 0x09  # MQTT v5 property identifier


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def publish_packet(topic: bytes, payload: bytes, qos: int, retain: bool, mid: int,
                   v5: bool, correlation_data: bytes | None = None) -> bytes:
    """A complete PUBLISH packet (MQTT 3.1.1 section 3.3, 5.0 section 3.3)."""
    variable = len(topic).to_bytes(2, "big") + topic
    if qos:
        variable += mid.to_bytes(2, "big")
    if v5:
        if correlation_data is None:
            variable += b"\x00"
        else:
            prop = bytes([_CORRELATION_DATA]) + len(correlation_data).to_bytes(2, "big") \
                + correlation_data
            variable += _varint(len(prop)) + prop
    return bytes([0x30 | qos << 1 | int(retain)]) + \
        _varint(len(variable) + len(payload)) + variable + payload


def usable_topic(topic: str) -> bytes | None:
    """The topic's bytes if it can be published as it is (paho checks the rest).
    Remembered for the topics published most (a device's, the reply topics)."""
    data = _usable.get(topic)
    if data is None:
        data = _check_topic(topic)
        if data is not None and len(topic) <= _USABLE_LONGEST:
            if len(_usable) >= _USABLE_KEPT:
                _usable.clear()  # many distinct topics: start over, stay bounded
            _usable[topic] = data
    return data


# At most ~2 MB however many distinct Response Topics commands bring (a topic may be
# 64 KB long).
_USABLE_KEPT, _USABLE_LONGEST = 4096, 256
_usable: dict[str, bytes] = {}


def _check_topic(topic: str) -> bytes | None:
    data = topic.encode("utf-8", "surrogatepass")
    if not data or len(data) > 65535 or b"+" in data or b"#" in data or b"\0" in data:
        return None
    try:
        topic.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return data


Entry = tuple[bytes, bytes, bool, bytes | None, "asyncio.Future[int] | None"]


class Outbox:
    def __init__(self, qos: int, v5: bool) -> None:
        self.qos = qos
        self.v5 = v5
        self.window = DEFAULT_WINDOW
        self.unacked = 0
        self._paho: Any = None
        self._sock: Any = None
        self._acks: dict[int, asyncio.Future[int] | None] = {}  # mid -> publish() waiting
        self._backlog: deque[Entry] = deque()
        self.dropped = 0

    def attach(self, paho_client: Any, sock: Any, window: int | None) -> None:
        """A new connection: `window` is the broker's Receive Maximum, if it said one."""
        self.detach()
        self._paho, self._sock = paho_client, sock
        self.window = min(window, MAX_WINDOW) if window else DEFAULT_WINDOW

    def detach(self) -> None:
        """The connection is gone: what waited for it is dropped (publish() -> False)."""
        for future in self._acks.values():
            if future is not None:
                future.cancel()
        for *_, future in self._backlog:
            if future is not None:
                future.cancel()
        self._acks.clear()
        self._backlog.clear()
        self.unacked = 0
        self._paho = self._sock = None

    @property
    def attached(self) -> bool:
        return self._sock is not None

    def send(self, topic: bytes, payload: bytes, retain: bool, correlation_data: bytes | None,
             future: asyncio.Future[int] | None) -> bool:
        """Publish at the link's QoS; False: dropped. `future` gets the PUBACK's reason
        code (0: accepted)."""
        if self._sock is None:
            return False
        if self.qos == 0:
            self._sock.send(publish_packet(topic, payload, 0, retain, 0, self.v5,
                                           correlation_data))
            if future is not None:
                future.set_result(0)
            return True
        if self.unacked >= self.window or self._backlog:
            if future is None and self.unacked + len(self._backlog) >= MAX_WAITING:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("MQTT broker is not acknowledging: %d messages dropped "
                                "(%d waiting)", self.dropped,
                                self.unacked + len(self._backlog))
                return False
            self._backlog.append((topic, payload, retain, correlation_data, future))
            return True
        self._write(topic, payload, retain, correlation_data, future)
        return True

    def _write(self, topic: bytes, payload: bytes, retain: bool,
               correlation_data: bytes | None, future: asyncio.Future[int] | None) -> None:
        mid = self._paho._mid_generate()
        while mid in self._acks:  # only after 65,535 ids with one still unacknowledged
            mid = self._paho._mid_generate()
        self._acks[mid] = future
        self.unacked += 1
        self._sock.send(publish_packet(topic, payload, 1, retain, mid, self.v5,
                                       correlation_data))

    def acknowledged(self, mid: int, reason: int) -> bool:
        """A PUBACK arrived; False if the packet id is not one of ours."""
        if mid not in self._acks:
            return False
        future = self._acks.pop(mid)
        self.unacked -= 1
        if future is not None and not future.done():
            future.set_result(reason)
        while self._backlog and self.unacked < self.window:
            topic, payload, retain, correlation_data, future = self._backlog.popleft()
            if future is None or not future.done():
                self._write(topic, payload, retain, correlation_data, future)
        return True
