"""Where paho and aiomqtt fall short for a long-running bridge, fixed from outside.

Each fix says what went wrong without it; `link.py` applies them to every client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiomqtt
import paho.mqtt.client as paho
import paho.mqtt.properties as paho_properties
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes

from bridge.core.ratelimit import LogBudget, clip, held_note
from bridge.mqtt.batching import BatchingSocket

if TYPE_CHECKING:
    from paho.mqtt.client import _InPacket

log = logging.getLogger("bridge.mqtt.link")  # one logger for the whole MQTT link
_ACK = struct.Struct("!BBH")  # packet type, remaining length 2, packet id
_PUBACK = PacketTypes.PUBACK << 4


def read_utf(buffer: bytes | bytearray, maxlen: int) -> tuple[str, int]:
    """paho's readUTF without its U+FEFF check.

    paho refuses U+FEFF in a v5 string property as a malformed packet and drops the
    connection, although MQTT 5.0 1.5.4 [MQTT-1.5.4-3] only says a receiver must not
    strip it: it is valid UTF-8 that mosquitto forwards. One command with a BOM in
    its Response Topic or a User Property would take the bridge off the broker
    (and, retained, at every reconnect). The other checks stay as paho has them.
    """
    if maxlen < 2:
        raise MalformedPacket("Not enough data to read string length")
    length = int.from_bytes(buffer[:2], "big")
    if length > maxlen - 2:
        raise MalformedPacket("Length delimited string too long")
    try:
        text = bytes(buffer[2:2 + length]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"invalid UTF-8: {exc.reason}") from None
    if "\0" in text:
        raise MalformedPacket("[MQTT-1.5.4-2] Null found in UTF-8 data")
    return text, length + 2


paho_properties.readUTF = read_utf


def tolerate_bad_publish(client: paho.Client, budget: LogBudget) -> None:
    """A PUBLISH that paho cannot decode is acknowledged and ignored with one log line,
    instead of ending the connection (paho answers a malformed packet by dropping it,
    and the broker would deliver a retained one again at every reconnect)."""
    handle = client._handle_publish

    def handle_publish() -> MQTTErrorCode:
        try:
            return handle()
        except Exception as exc:
            packet = client._in_packet
            qos, topic, mid = _publish_header(packet["command"], packet["packet"])
            held = budget.take("bad-publish")
            if held is not None:
                log.warning("ignored a message on %s that could not be decoded (%s)%s",
                            clip(topic), clip(str(exc) or type(exc).__name__),
                            held_note(held))
            if qos == 1:
                return client._send_puback(mid)
            if qos == 2:  # paho answers the PUBREL of an unknown id with PUBCOMP
                return client._send_pubrec(mid)
            return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._handle_publish = handle_publish  # type: ignore[method-assign]


def _publish_header(command: int, packet: bytes | bytearray) -> tuple[int, str, int]:
    """QoS, topic (for the log) and packet id of a PUBLISH, read without its properties."""
    qos = (command & 0x06) >> 1
    length = int.from_bytes(packet[:2], "big") if len(packet) >= 2 else 0
    topic = bytes(packet[2:2 + length]).decode("utf-8", "replace")
    mid = int.from_bytes(packet[2 + length:4 + length], "big") if qos else 0
    return qos, topic, mid


Shortcut = Callable[[int, bytes], bool]


def read_whole_packets(client: paho.Client, sock: BatchingSocket,
                       shortcuts: Mapping[int, Shortcut]) -> None:
    """paho reads a packet with a `recv` for its first byte, one per length byte and one
    for its body, each through two wrappers, and keeps the parts in a dict: with three
    packets per command (the command, the PUBACKs of its two answers) that was a sixth
    of the bridge's CPU per command. Every packet the socket buffer holds whole is
    handed to paho's handler in one call (paho's loop_read and aiomqtt's reader asked
    for one packet at a time, with a check of the buffer each); a packet cut off, the
    end of the stream or an error go to paho's own reading, which raises or reports
    what it finds.

    `shortcuts`, by packet type (PacketTypes.PUBLISH, ...), may take a whole packet
    first, given its first byte and body: True when done with it, False to leave it
    to paho's handler."""
    read = client._packet_read

    def packet_read() -> MQTTErrorCode:
        taken = 0
        while client._in_packet["command"] == 0 and client._sock is sock:
            try:
                whole = sock.take_packet()
            except OSError:  # would block, TLS wants more, a broken connection
                whole = None
            if whole is None:
                break
            if not taken:
                with client._msgtime_mutex:
                    client._last_bytes_received = paho.time_func()
            taken += 1
            command, body = whole
            shortcut = shortcuts.get(command >> 4)
            if shortcut is not None and shortcut(command, body):
                continue
            client._in_packet = _in_packet(command, body)
            try:
                rc = client._packet_handle()
            except MalformedPacket:  # as paho does
                rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
            client._in_packet = _in_packet()  # paho's state between packets
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        # Nothing whole (any more): paho's call, unless whole packets were taken and
        # the rest can wait for the socket to be readable again.
        return MQTTErrorCode.MQTT_ERR_SUCCESS if taken else read()

    client._packet_read = packet_read  # type: ignore[method-assign]


def _in_packet(command: int = 0, body: bytes = b"") -> _InPacket:
    """paho's record of the packet being read: a whole one, or (command 0) none."""
    return {"command": command, "have_remaining": 1 if command else 0,
            "remaining_count": [], "remaining_mult": 1, "remaining_length": len(body),
            "packet": bytearray(body), "to_process": 0, "pos": 0}


def acknowledge_at_once(client: paho.Client, sock: BatchingSocket) -> None:
    """paho queues the PUBACK of each command (a lock, its packet deque, a write
    registration and a loop callback to write it) on its way to a socket that batches
    writes anyway: written to the socket directly. PUBACKs keep their order (all go
    this way), which is all MQTT asks [MQTT-4.6.0-2]."""

    def send_puback(mid: int) -> MQTTErrorCode:
        sock.send(_ACK.pack(_PUBACK, 2, mid))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._send_puback = send_puback  # type: ignore[method-assign]


def raise_if_cancelled() -> None:
    """Python 3.11's asyncio.wait_for (used by aiomqtt's connect and subscribe) loses a
    cancellation that arrives just as the awaited future completes (CPython
    gh-86296): the link then ran on, connected, after shutdown had cancelled it, and
    the bridge never stopped. Honour such a swallowed cancel at the next step."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def write_in_loop(client: aiomqtt.Client) -> None:
    """paho's own packets (PUBACKs for commands, SUBSCRIBE, PINGREQ) written on the next
    loop turn. aiomqtt registers a writer for each through call_soon_threadsafe: a
    self-pipe write and two epoll changes per packet, for a socket (BatchingSocket)
    whose send never blocks. Only after the handshake: paho connects in a thread."""
    pc = client._client
    loop = asyncio.get_running_loop()
    if pc._sock is not None:  # nothing of aiomqtt's may stay registered
        loop.remove_writer(pc._sock.fileno())
    scheduled = False

    def write() -> None:
        nonlocal scheduled
        scheduled = False
        try:
            pc.loop_write()
        except Exception as exc:  # a broken connection, as aiomqtt's own writer does
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)

    def register_write(*_: Any) -> None:
        nonlocal scheduled
        if not scheduled:
            scheduled = True
            loop.call_soon(write)

    pc.on_socket_register_write = register_write
    pc.on_socket_unregister_write = lambda *_: None


class ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the TLS handshake fails: paho leaves the socket of a failed
    handshake (e.g. a certificate that does not verify) to the garbage collector, one
    file descriptor per reconnect attempt until then."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise
