"""A PUBLISH the MQTT client cannot decode keeps the link up (issue 9, item 1); every
other PUBLISH arrives whole, whichever path decodes it (the link's own for QoS 0/1,
paho's for QoS 2 and for what the link's leaves to it).

mosquitto checks UTF-8 strictly and never forwards such a packet, so a hand-written
minimal MQTT v5 broker on 127.0.0.1 sends one: a Response Topic that is not UTF-8.
paho would call the packet malformed and drop the connection; the link acknowledges
it, logs one line and stays connected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from bridge.config.load import MqttSettings
from bridge.mqtt.inbox import Inbound
from bridge.mqtt.link import MqttLink
from tests.conftest import wait_until


def _remaining(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


async def _packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header, await reader.readexactly(length)


TOPIC = b"modbus/meter1/request"


def publish(qos: int, mid: int, properties: bytes, payload: bytes, topic: bytes = TOPIC,
            retain: bool = False) -> bytes:
    """A v5 PUBLISH packet; `properties` without their length."""
    body = (len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
            + _remaining(len(properties)) + properties + payload)
    return bytes([0x30 | qos << 1 | retain]) + _remaining(len(body)) + body


BAD_PROPERTY = b"\x08" + (3).to_bytes(2, "big") + b"\xed\xa0\x80"  # not UTF-8


class TinyBroker:
    """Accepts CONNECT and SUBSCRIBE, then sends `packets` (by default one PUBLISH with
    a bad property); records the ids it gets acknowledged (PUBACK, and PUBCOMP after
    the PUBREL it sends for a PUBREC)."""

    def __init__(self, packets: list[bytes] | None = None, expect: int = 1) -> None:
        self.packets = packets or [publish(1, 7, BAD_PROPERTY, b'{"op": "read"}')]
        self.connections = 0
        self.acks: list[int] = []
        self.expect = expect
        self.acked: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()

    def _ack(self, body: bytes) -> None:
        self.acks.append(int.from_bytes(body[:2], "big"))
        if len(self.acks) >= self.expect and not self.acked.done():
            self.acked.set_result(self.acks[0])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            kind, _ = await _packet(reader)
            assert kind >> 4 == 1  # CONNECT
            writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK, success, no properties
            while True:
                kind, body = await _packet(reader)
                if kind >> 4 == 8:  # SUBSCRIBE: grant QoS 1 to each filter
                    packet_id, rest = body[:2], body[3:]  # (property length 0)
                    codes = b""
                    while rest:
                        size = int.from_bytes(rest[:2], "big")
                        rest, codes = rest[3 + size:], codes + b"\x01"
                    payload = packet_id + b"\x00" + codes
                    writer.write(b"\x90" + _remaining(len(payload)) + payload)
                    writer.write(b"".join(self.packets))
                elif kind >> 4 in (4, 7):  # PUBACK, PUBCOMP
                    self._ack(body)
                elif kind >> 4 == 5:  # PUBREC: release it
                    writer.write(b"\x62\x02" + body[:2])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def linked(broker: TinyBroker, subscription: str, will_topic: str | None = None
                 ) -> AsyncIterator[tuple[MqttLink, list[Inbound]]]:
    """An MqttLink connected to `broker`, and what it hands on."""
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = MqttLink(MqttSettings(host="127.0.0.1", port=port, reconnect_min=0.1,
                                 reconnect_max=0.1),
                    will_topic=will_topic, subscriptions=[subscription])
    received: list[Inbound] = []

    async def on_connect() -> None:
        pass

    task = asyncio.create_task(link.run(on_connect, received.append))
    try:
        yield link, received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.close()
        await server.wait_closed()


async def test_an_undecodable_publish_is_acked_logged_and_the_link_stays_up(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.mqtt.link")
    broker = TinyBroker()
    async with linked(broker, "modbus/meter1/request", "modbus/bridge/state") as (link,
                                                                                 received):
        assert await asyncio.wait_for(broker.acked, 10) == 7
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(broker.closed.wait(), 1.0)
        assert not broker.closed.is_set(), "the link dropped the connection"
        assert broker.connections == 1 and link.connected.is_set()
        assert received == []  # ignored, not half-parsed
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and "could not be decoded" in lines[0], lines
        assert "modbus/meter1/request" in lines[0]


async def test_every_qos_arrives_whole_whichever_path_decodes_it() -> None:
    def props(expiry: int | None = None) -> bytes:
        reply = b"replies/x"
        out = b"\x08" + len(reply).to_bytes(2, "big") + reply  # Response Topic
        out += b"\x09" + (3).to_bytes(2, "big") + b"c-1"  # Correlation Data
        return out + (b"\x02" + expiry.to_bytes(4, "big") if expiry is not None else b"")

    broker = TinyBroker([
        publish(1, 11, props(30), b'{"q": 1}'),
        publish(0, 0, b"", b'{"q": 0}', retain=True),
        publish(2, 12, props(), b'{"q": 2}'),  # paho's path: PUBREC, PUBREL, PUBCOMP
        publish(1, 13, b"", b"\x00binary\xff", topic="modbus/ü/request".encode()),
    ], expect=3)
    async with linked(broker, "modbus/+/request") as (_, received):
        await asyncio.wait_for(broker.acked, 10)
        # The QoS 2 message is handed on when released.
        await wait_until(lambda: len(received) == 4, what="all four handed on")
        assert sorted(broker.acks) == [11, 12, 13]
        by_payload = {m.payload: m for m in received}
        assert by_payload[b'{"q": 1}'] == Inbound(
            "modbus/meter1/request", b'{"q": 1}', False, "replies/x", b"c-1", 30.0)
        assert by_payload[b'{"q": 0}'] == Inbound("modbus/meter1/request", b'{"q": 0}', True)
        assert by_payload[b'{"q": 2}'] == Inbound(
            "modbus/meter1/request", b'{"q": 2}', False, "replies/x", b"c-1")
        assert by_payload[b"\x00binary\xff"].topic == "modbus/ü/request"
        assert len(received) == 4
