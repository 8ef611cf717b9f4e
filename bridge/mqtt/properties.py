"""A received PUBLISH and its MQTT v5 properties, decoded in one pass.

paho builds a `Properties` object per received PUBLISH with two fresh tables (every
property name, every property's type and packets), clears it by trying all 27 names,
and finds each property's name by a linear scan that calls `str.replace` on every
name. For one command with a Response Topic and Correlation Data that was about a
fifth of the bridge's CPU per command, and the same again in every v5 client.

`PublishProperties` is paho's class with the tables shared and `unpack` rewritten for
the eight properties a PUBLISH may carry. What it accepts and refuses is paho's (the
unit tests compare the two), with one bound added: a fixed-size value that reaches
past the property length is malformed too (paho read it from the payload). Strings
go through client_fixes' U+FEFF-tolerant `read_utf`, as paho's do.
`install()` makes paho's PUBLISH decoder use it; `decode_publish` is that decoder
without paho's per-message struct formats, for the link's shortcut (link.py).
"""

from __future__ import annotations

from typing import Any

import paho.mqtt._packet as paho_packet
import paho.mqtt.properties as paho_properties
from paho.mqtt.exception import MalformedPacket, MQTTException
from paho.mqtt.packettypes import PacketTypes

from bridge.mqtt.client_fixes import read_utf

_TABLES = paho_properties.Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_BYTE, _INT2, _INT4, _VBI, _BINARY, _UTF8, _PAIR = range(7)  # paho's type indices
_FIXED = {_BYTE: 1, _INT2: 2, _INT4: 4}  # sizes of the fixed-size types
# identifier -> (attribute name, type, may repeat), for what a PUBLISH may carry
_PUBLISH: dict[int, tuple[str, int, bool]] = {
    ident: (name.replace(" ", ""), _TABLES.properties[ident][0], ident in (11, 38))
    for name, ident in _TABLES.names.items()
    if PacketTypes.PUBLISH in _TABLES.properties[ident][1]}
# paho's range checks (its __setattr__) for these
_RANGES = {"PayloadFormatIndicator": (0, 1), "TopicAlias": (1, 65535),
           "SubscriptionIdentifier": (1, 268435455)}


def _vbi(buffer: bytes, pos: int, end: int) -> tuple[int, int]:
    """A Variable Byte Integer at `pos`: (value, position after it)."""
    value, shift = 0, 0
    for _ in range(4):
        if pos >= end:
            raise MalformedPacket("Not enough data to decode Variable Byte Integer")
        digit = buffer[pos]
        pos += 1
        value |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return value, pos
        shift += 7
    raise MalformedPacket("Variable Byte Integer is more than four bytes long")


class PublishProperties(paho_properties.Properties):
    types = _TABLES.types
    names = _TABLES.names
    properties = _TABLES.properties

    def __init__(self, packetType: int = PacketTypes.PUBLISH) -> None:
        object.__setattr__(self, "packetType", packetType)

    def unpack(self, buffer: bytes) -> tuple[PublishProperties, int]:
        if self.packetType != PacketTypes.PUBLISH:
            return super().unpack(buffer)  # type: ignore[no-any-return,no-untyped-call]
        buffer = bytes(buffer)
        length, start = _vbi(buffer, 0, len(buffer))
        end = start + length
        if end > len(buffer):
            raise MalformedPacket("Property length exceeds the packet")
        pos = start
        while pos < end:
            ident, pos = _vbi(buffer, pos, end)
            try:
                name, kind, repeats = _PUBLISH[ident]
            except KeyError:
                raise MQTTException(f"Property {ident} does not apply to PUBLISH") from None
            value, pos = _value(buffer, pos, end, kind)
            if name in _RANGES and not _RANGES[name][0] <= value <= _RANGES[name][1]:
                raise MQTTException(f"{name} property value {value} is out of range")
            if repeats:
                value = [*self.__dict__.get(name, ()), value]
            elif name in self.__dict__:
                raise MQTTException(f"Property '{name}' must not exist more than once")
            object.__setattr__(self, name, value)
        return self, end


def _value(buffer: bytes, pos: int, end: int, kind: int) -> tuple[Any, int]:
    if kind == _VBI:
        return _vbi(buffer, pos, end)
    if kind in (_UTF8, _BINARY, _PAIR):
        if end - pos < 2:
            raise MalformedPacket("Not enough data to read a length-delimited value")
        if kind == _BINARY:
            size = buffer[pos] << 8 | buffer[pos + 1]
            if pos + 2 + size > end:
                raise MalformedPacket("Binary data exceeds the property length")
            return buffer[pos + 2:pos + 2 + size], pos + 2 + size
        text, used = read_utf(buffer[pos:end], end - pos)
        if kind == _UTF8:
            return text, pos + used
        second, used2 = read_utf(buffer[pos + used:end], end - pos - used)
        return (text, second), pos + used + used2
    size = _FIXED[kind]
    if pos + size > end:
        raise MalformedPacket("A property value exceeds the property length")
    return int.from_bytes(buffer[pos:pos + size], "big"), pos + size


def decode_publish(command: int, body: bytes, v5: bool
                   ) -> tuple[bytes, int, PublishProperties | None, bytes]:
    """A received PUBLISH's topic, packet id (0 at QoS 0), properties (v5) and payload.

    What paho's `_packet.decode_publish` returns, without its three struct formats
    built from the packet's lengths (each parsed anew: a cache miss per new length)
    and its wrapper; anything it would refuse raises MalformedPacket or
    MQTTException here too."""
    if len(body) < 2:
        raise MalformedPacket("PUBLISH too short for its topic length")
    pos = 2 + (body[0] << 8 | body[1])
    if pos > len(body):
        raise MalformedPacket("PUBLISH topic exceeds the packet")
    topic = body[2:pos]
    if not v5 and pos == 2:
        raise MalformedPacket("topic can't be empty in MQTTv3")
    mid = 0
    if command & 0x06:
        if pos + 2 > len(body):
            raise MalformedPacket("PUBLISH too short for its packet id")
        mid = body[pos] << 8 | body[pos + 1]
        pos += 2
    properties = None
    if v5:
        properties, used = PublishProperties().unpack(body[pos:])
        pos += used
    return topic, mid, properties, body[pos:]


def install() -> None:
    """paho's PUBLISH decoder (`_packet.decode_publish`) builds ours from now on."""
    paho_packet.Properties = PublishProperties  # type: ignore[attr-defined]
