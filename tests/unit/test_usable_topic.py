"""bridge/mqtt/outbox.usable_topic: which topics go straight to the socket, and its
memory of them staying bounded whatever topics commands bring."""

from __future__ import annotations

import pytest

from bridge.mqtt import outbox
from bridge.mqtt.outbox import usable_topic


@pytest.mark.parametrize(("topic", "data"), [
    ("modbus/meter1/response", b"modbus/meter1/response"),
    ("replies/ü", "replies/ü".encode()),
    ("", None),
    ("a/+/b", None),
    ("a/#", None),
    ("a\0b", None),
    ("a\ud800b", None),  # a lone surrogate cannot be UTF-8
    ("x" * 65536, None),
])
def test_usable_or_not(topic: str, data: bytes | None) -> None:
    assert usable_topic(topic) == data
    assert usable_topic(topic) == data  # the same when remembered


def test_remembered_topics_stay_bounded() -> None:
    outbox._usable.clear()
    for n in range(outbox._USABLE_KEPT + 100):
        assert usable_topic(f"replies/{n}") == f"replies/{n}".encode()
    assert len(outbox._usable) <= outbox._USABLE_KEPT
    long = "replies/" + "x" * 60_000  # a Response Topic may be this long: not kept
    assert usable_topic(long) == long.encode()
    assert long not in outbox._usable
