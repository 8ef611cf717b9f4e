"""bridge/mqtt/properties.py against paho's own Properties: the same attributes from
the same bytes, the same refusals (as MalformedPacket once paho's decoder wraps them).
The real path (mosquitto, hostile properties) is tests/integration/test_hostile_mqtt.py."""

from __future__ import annotations

import random
from typing import Any

import paho.mqtt._packet as paho_packet
import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket, MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

import bridge.mqtt.link  # noqa: F401  (installs the decoder and the U+FEFF fix)
from bridge.mqtt.properties import PublishProperties, decode_publish

NAMES = ["PayloadFormatIndicator", "MessageExpiryInterval", "ContentType", "ResponseTopic",
         "CorrelationData", "SubscriptionIdentifier", "TopicAlias", "UserProperty"]


def paho_unpack(buffer: bytes) -> dict[str, Any]:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.unpack(buffer)  # type: ignore[no-untyped-call]
    return {name: getattr(props, name) for name in NAMES if hasattr(props, name)}


def ours(buffer: bytes) -> dict[str, Any]:
    props, used = PublishProperties().unpack(buffer)
    assert used == len(buffer)
    return {name: getattr(props, name) for name in NAMES if hasattr(props, name)}


def packed(**values: Any) -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return bytes(props.pack())  # type: ignore[no-untyped-call]


def test_a_command_s_properties_decode_as_paho_decodes_them() -> None:
    buffer = packed(ResponseTopic="replies/app/1", CorrelationData=b"\x00\xffid",
                    MessageExpiryInterval=30, UserProperty=[("a", "1"), ("a", "2")],
                    ContentType="application/json", PayloadFormatIndicator=1)
    assert ours(buffer) == paho_unpack(buffer) == {
        "PayloadFormatIndicator": 1, "MessageExpiryInterval": 30,
        "ContentType": "application/json", "ResponseTopic": "replies/app/1",
        "CorrelationData": b"\x00\xffid", "UserProperty": [("a", "1"), ("a", "2")]}


def test_random_property_sets_decode_as_paho_decodes_them() -> None:
    rng = random.Random(13)
    for _ in range(500):
        values: dict[str, Any] = {}
        if rng.random() < 0.5:
            values["ResponseTopic"] = "".join(rng.choice("ab/é°") for _ in range(rng.randrange(40)))
        if rng.random() < 0.5:
            values["CorrelationData"] = rng.randbytes(rng.randrange(300))
        if rng.random() < 0.3:
            values["MessageExpiryInterval"] = rng.randrange(1 << 32)
        if rng.random() < 0.3:
            values["SubscriptionIdentifier"] = rng.randrange(1, 268435456)
        if rng.random() < 0.3:
            values["TopicAlias"] = rng.randrange(1, 65536)
        if rng.random() < 0.3:
            values["UserProperty"] = [(f"k{i}", "v" * i) for i in range(rng.randrange(1, 4))]
        buffer = packed(**values)
        assert ours(buffer) == paho_unpack(buffer), values


def test_a_byte_order_mark_is_kept_as_client_fixes_keeps_it() -> None:
    buffer = packed(ResponseTopic="\ufeffreplies/x")
    assert ours(buffer) == paho_unpack(buffer) == {"ResponseTopic": "\ufeffreplies/x"}


def vbi(n: int) -> bytes:
    return bytes(VariableByteIntegers.encode(n))  # type: ignore[no-untyped-call]


def framed(body: bytes) -> bytes:
    return vbi(len(body)) + body


@pytest.mark.parametrize(("body", "why"), [
    (bytes([17, 0, 0, 0, 1]), "Session Expiry Interval is a CONNECT property"),
    (bytes([99, 1]), "no property 99"),
    (bytes([1, 2]), "Payload Format Indicator 2"),
    (bytes([35, 0, 0]), "Topic Alias 0"),
    (bytes([11, 0]), "Subscription Identifier 0"),
    (bytes([1, 0, 1, 1]), "Payload Format Indicator twice"),
    (bytes([8, 0, 5, 0x61]), "a string longer than the properties"),
    (bytes([8, 0, 1, 0]), "a NUL in a string"),
    (bytes([8, 0, 1, 0xFF]), "not UTF-8"),
    (bytes([9, 0, 9, 1]), "binary data longer than the properties"),
    (bytes([11, 0x80, 0x80, 0x80, 0x80, 1]), "a five-byte Variable Byte Integer"),
])
def test_what_paho_refuses_is_refused(body: bytes, why: str) -> None:
    with pytest.raises((MalformedPacket, *paho_packet.DECODE_ERRORS)):
        paho_unpack(framed(body))
    with pytest.raises((MalformedPacket, MQTTException)):
        ours(framed(body))
    publish = b"\x00\x01t" + b"\x00\x07" + framed(body) + b"payload"
    with pytest.raises(MalformedPacket):  # what paho's decoder turns it into
        paho_packet.decode_publish(0x32, publish, MQTTProtocolVersion.MQTTv5)


def test_a_fixed_size_value_may_not_reach_into_the_payload() -> None:
    # paho would read the Message Expiry Interval's last bytes from the payload.
    with pytest.raises(MalformedPacket):
        ours(framed(bytes([2, 0, 0])) + b"xx")


def test_paho_s_publish_decoder_uses_it() -> None:
    publish = b"\x00\x01t" + b"\x00\x07" + packed(ResponseTopic="r") + b"payload"
    packet = paho_packet.decode_publish(0x32, publish, MQTTProtocolVersion.MQTTv5)
    assert isinstance(packet.properties, PublishProperties)
    assert packet.properties.ResponseTopic == "r"
    assert (packet.topic, packet.mid, packet.payload) == (b"t", 7, b"payload")


def _decoded(command: int, body: bytes, v5: bool) -> Any:
    """(topic, mid, properties, payload) or the class of the refusal, ours and paho's."""
    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    try:
        theirs = paho_packet.decode_publish(command, body, protocol)
        paho_result: Any = (theirs.topic, theirs.mid, props_of(theirs.properties),
                            theirs.payload)
    except MQTTException:
        paho_result = MQTTException
    try:
        topic, mid, properties, payload = decode_publish(command, body, v5)
        our_result: Any = (topic, mid, props_of(properties), payload)
    except MQTTException:
        our_result = MQTTException
    return our_result, paho_result


def props_of(properties: Any) -> dict[str, Any] | None:
    if properties is None:
        return None
    return {name: getattr(properties, name) for name in NAMES if hasattr(properties, name)}


def test_publish_packets_decode_as_paho_decodes_them_whole_or_cut_off() -> None:
    """properties.decode_publish (the link's shortcut for every command) and paho's
    decoder: the same topic, packet id, properties and payload, or both refuse; for
    v5 and 3.1.1, QoS 0 and 1, every length a packet can be cut to."""
    rng = random.Random(5)
    cases = 0
    for v5 in (True, False):
        for qos in (0, 1):
            for topic in (b"", b"t", "modbus/dev/request/é".encode()):
                props = packed(ResponseTopic="replies/a", CorrelationData=b"\x01\x02",
                               MessageExpiryInterval=9) if v5 else b""
                body = len(topic).to_bytes(2, "big") + topic + \
                    (b"\x01\x2c" if qos else b"") + (props if v5 else b"") + \
                    rng.randbytes(rng.randrange(1, 50))
                for cut in range(len(body) + 1):
                    ours_, paho_ = _decoded(0x30 | qos << 1, body[:cut], v5)
                    assert ours_ == paho_, (v5, qos, topic, cut)
                    cases += 1
    assert cases > 300
