"""A PUBLISH the MQTT client cannot decode keeps the link up (issue 9, item 1).

mosquitto checks UTF-8 strictly and never forwards such a packet, so a hand-written
minimal MQTT v5 broker on 127.0.0.1 sends one: a Response Topic that is not UTF-8.
paho would call the packet malformed and drop the connection; the link acknowledges
it, logs one line and stays connected."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from bridge.config.load import MqttSettings
from bridge.mqtt.inbox import Inbound
from bridge.mqtt.link import MqttLink


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


class TinyBroker:
    """Accepts CONNECT and SUBSCRIBE, then sends one PUBLISH with a bad property."""

    def __init__(self) -> None:
        self.connections = 0
        self.acked: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()

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
                    topic = b"modbus/meter1/request"
                    bad = b"\x08" + (3).to_bytes(2, "big") + b"\xed\xa0\x80"  # not UTF-8
                    body = (len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big")
                            + bytes([len(bad)]) + bad + b'{"op": "read"}')
                    writer.write(b"\x32" + _remaining(len(body)) + body)  # QoS 1
                elif kind >> 4 == 4 and not self.acked.done():  # PUBACK
                    self.acked.set_result(int.from_bytes(body[:2], "big"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        finally:
            writer.close()


async def test_an_undecodable_publish_is_acked_logged_and_the_link_stays_up(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.mqtt.link")
    broker = TinyBroker()
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = MqttLink(MqttSettings(host="127.0.0.1", port=port, reconnect_min=0.1,
                                 reconnect_max=0.1),
                    will_topic="modbus/bridge/state", subscriptions=["modbus/meter1/request"])
    received: list[Inbound] = []

    async def on_connect() -> None:
        pass

    task = asyncio.create_task(link.run(on_connect, received.append))
    try:
        assert await asyncio.wait_for(broker.acked, 10) == 7
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(broker.closed.wait(), 1.0)
        assert not broker.closed.is_set(), "the link dropped the connection"
        assert broker.connections == 1 and link.connected.is_set()
        assert received == []  # ignored, not half-parsed
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and "could not be decoded" in lines[0], lines
        assert "modbus/meter1/request" in lines[0]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.close()
        await server.wait_closed()
