"""BatchingSocket.take_packet over a real socket pair: whole packets come out at once,
anything else is left for paho's byte-by-byte reading, untouched. (Every MQTT test
runs it against mosquitto too: the bridge reads all its packets this way.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from bridge.mqtt.batching import BatchingSocket


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def next_turn() -> None:
    await asyncio.sleep(0)  # the buffer may be refilled again in a new loop turn


async def test_whole_packets_come_out_one_by_one(pair: tuple[socket.socket, socket.socket]
                                                 ) -> None:
    mine, broker = pair
    sock = BatchingSocket(mine, asyncio.get_running_loop())
    body = bytes(range(200)) * 2  # 400 bytes: a two-byte remaining length (0x90 0x03)
    broker.sendall(b"\x40\x02\x00\x07" + b"\x30" + bytes([0x90, 0x03]) + body)
    assert sock.take_packet() == (0x40, b"\x00\x07")
    assert sock.take_packet() == (0x30, body)
    with pytest.raises(BlockingIOError):  # refilled once this turn already
        sock.take_packet()
    await next_turn()
    with pytest.raises(BlockingIOError):  # nothing more from the broker
        sock.take_packet()


async def test_a_packet_cut_off_is_left_to_recv(pair: tuple[socket.socket, socket.socket]
                                                ) -> None:
    mine, broker = pair
    sock = BatchingSocket(mine, asyncio.get_running_loop())
    broker.sendall(b"\x30\x05ab")  # 2 of 5 body bytes
    assert sock.take_packet() is None
    assert sock.recv(1) == b"\x30"  # paho's reading starts where take_packet left it
    assert sock.recv(1) == b"\x05"
    assert sock.recv(5) == b"ab"
    await next_turn()
    broker.sendall(b"cde\x40\x02\x00\x01")
    assert sock.recv(3) == b"cde"
    assert sock.take_packet() == (0x40, b"\x00\x01")


async def test_a_length_of_five_bytes_is_left_to_paho(
        pair: tuple[socket.socket, socket.socket]) -> None:
    mine, broker = pair
    sock = BatchingSocket(mine, asyncio.get_running_loop())
    broker.sendall(b"\x30\xff\xff\xff\xff\x01")  # paho: MQTT_ERR_PROTOCOL
    assert sock.take_packet() is None
    assert sock.recv(1) == b"\x30"


async def test_end_of_stream(pair: tuple[socket.socket, socket.socket]) -> None:
    mine, broker = pair
    sock = BatchingSocket(mine, asyncio.get_running_loop())
    broker.close()
    assert sock.take_packet() is None
    assert sock.recv(1) == b""  # paho: connection lost
