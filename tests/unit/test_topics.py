"""The topic scheme: what the bridge publishes to, subscribes to, and how it reads topics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.mqtt.topics import Inbound, Topics

T = Topics("modbus")


@pytest.mark.parametrize(("topic", "expected"), [
    (T.bridge_state, "modbus/bridge/state"),
    (T.bridge_info, "modbus/bridge/info"),
    (T.bridge_health, "modbus/bridge/health"),
    (T.device_state("meter1"), "modbus/meter1"),
    (T.availability("meter1"), "modbus/meter1/availability"),
    (T.datapoint("meter1", "voltage_l1"), "modbus/meter1/voltage_l1"),
    (T.response("meter1"), "modbus/meter1/response"),
    (T.request("meter1"), "modbus/meter1/request"),
    (T.set("meter1"), "modbus/meter1/set"),
    (T.set_point("meter1", "setpoint"), "modbus/meter1/set/setpoint"),
    (T.get("meter1"), "modbus/meter1/get"),
])
def test_topics_follow_the_contract(topic, expected):
    assert topic == expected


@pytest.mark.parametrize(("topic", "expected"), [
    ("modbus/meter1/request", Inbound("meter1", "request")),
    ("modbus/meter1/set", Inbound("meter1", "set")),
    ("modbus/meter1/set/setpoint", Inbound("meter1", "set", "setpoint")),
    ("modbus/meter1/get", Inbound("meter1", "get")),
    ("modbus/dev-2/get", Inbound("dev-2", "get")),
    # unknown names still parse: the command parser answers unknown_datapoint
    ("modbus/meter1/set/nope", Inbound("meter1", "set", "nope")),
])
def test_parse_command_topics(topic, expected):
    assert T.parse(topic) == expected


@pytest.mark.parametrize("topic", [
    "modbus/bridge/state", "modbus/bridge/info", "modbus/bridge/health",
    "modbus/bridge/request", "modbus/bridge/set", "modbus/bridge/set/x",   # not a device
    "modbus/meter1", "modbus/meter1/availability", "modbus/meter1/response",  # our output
    "modbus/meter1/voltage_l1",
    "modbus/meter1/set/", "modbus/meter1/set/a/b", "modbus/meter1/get/x",  # bad shapes
    "modbus/meter1/request/x", "modbus//request", "modbus/meter1/REQUEST",
    "modbus", "modbus/", "", "other/meter1/request", "modbusx/meter1/request",
    "/modbus/meter1/request", "modbus/+/request", "modbus/meter1/set/+",
    "homeassistant/sensor/modbus_meter1/x/config",
])
def test_parse_ignores_what_is_not_a_command(topic):
    assert T.parse(topic) is None


def test_parse_can_be_limited_to_known_devices():
    assert T.parse("modbus/meter1/get", devices={"meter1"}) == Inbound("meter1", "get")
    assert T.parse("modbus/ghost/get", devices={"meter1"}) is None


def test_base_with_levels():
    t = Topics("home/modbus")
    assert t.set_point("m", "p") == "home/modbus/m/set/p"
    assert t.bridge_state == "home/modbus/bridge/state"
    assert t.parse("home/modbus/m/set/p") == Inbound("m", "set", "p")
    assert t.parse("home/modbus/bridge/set") is None
    assert t.parse("modbus/m/set") is None
    assert t.parse("home/m/set") is None


def test_subscriptions_are_per_device():
    assert T.subscriptions(["a", "b"]) == [
        "modbus/a/request", "modbus/a/set", "modbus/a/set/+", "modbus/a/get",
        "modbus/b/request", "modbus/b/set", "modbus/b/set/+", "modbus/b/get",
    ]
    assert T.subscriptions([]) == []


@pytest.mark.parametrize("base", ["", "/modbus", "modbus/", "a//b", "mod+bus", "#", "$SYS"])
def test_bad_base_is_refused(base):
    with pytest.raises(ValueError, match="base topic"):
        Topics(base)


@pytest.mark.parametrize("device", ["", "a/b", "+", "#", "bridge"])
def test_bad_device_id_is_refused_when_building(device):
    with pytest.raises(ValueError):
        T.request(device)


def test_bad_datapoint_is_refused_when_building():
    with pytest.raises(ValueError):
        T.set_point("meter1", "a/b")


_level = st.text(st.sampled_from("abz09_-"), min_size=1, max_size=8).filter(lambda s: s != "bridge")


@given(device=_level, point=_level)
def test_built_command_topics_parse_back(device, point):
    assert T.parse(T.request(device)) == Inbound(device, "request")
    assert T.parse(T.set(device)) == Inbound(device, "set")
    assert T.parse(T.set_point(device, point)) == Inbound(device, "set", point)
    assert T.parse(T.get(device)) == Inbound(device, "get")
    for published in (T.device_state(device), T.availability(device),
                      T.response(device), T.datapoint(device, point)):
        if not published.endswith(("/request", "/set", "/get")):
            assert T.parse(published) is None


@given(st.text(max_size=60))
def test_parse_never_raises(topic):
    result = T.parse(topic)
    assert result is None or result.kind in ("request", "set", "get")


N = Topics("modbus", "hall2")


@pytest.mark.parametrize(("topic", "expected"), [
    (N.bridge_state, "modbus/bridge/hall2/state"),
    (N.bridge_info, "modbus/bridge/hall2/info"),
    (N.bridge_health, "modbus/bridge/hall2/health"),
    (N.bridge_request, "modbus/bridge/hall2/request"),
    (N.bridge_response, "modbus/bridge/hall2/response"),
    (N.bridge("features"), "modbus/bridge/hall2/features"),
    (T.bridge_request, "modbus/bridge/request"),
    (T.bridge("features"), "modbus/bridge/features"),
    # device topics stay flat: device ids are unique across instances
    (N.device_state("meter1"), "modbus/meter1"),
    (N.availability("meter1"), "modbus/meter1/availability"),
    (N.request("meter1"), "modbus/meter1/request"),
])
def test_a_named_instance_moves_only_the_bridge_topics(topic, expected):
    assert topic == expected


def test_instance_names():
    assert (T.instance, T.explicit_instance) == ("main", False)
    assert (N.instance, N.explicit_instance) == ("hall2", True)
    # explicitly "main" still moves the topics: a second bridge may keep the plain ones
    assert Topics("modbus", "main").bridge_state == "modbus/bridge/main/state"
    with pytest.raises(ValueError, match="bridge topic"):
        Topics("modbus", "info")
    with pytest.raises(ValueError, match="instance"):
        Topics("modbus", "a/b")


@pytest.mark.parametrize(("topic", "instance"), [
    ("modbus/bridge/info", "main"),
    ("modbus/bridge/hall2/info", "hall2"),
    ("modbus/bridge/main/info", "main"),
    ("modbus/bridge/a/b/info", None),
    ("modbus/bridge/state", None),
    ("modbus/bridgeinfo", None),
    ("other/bridge/x/info", None),
    ("modbus/meter1/info", None),
])
def test_which_instance_a_bridge_topic_belongs_to(topic, instance):
    assert T.bridge_of(topic, "info") == instance
    assert N.bridge_of(topic, "info") == instance


def test_filters_for_every_instance():
    assert T.bridges("info") == ["modbus/bridge/info", "modbus/bridge/+/info"]
    assert T.parse("modbus/bridge/hall2/request") is None  # never a device command
