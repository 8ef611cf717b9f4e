"""Which of two live bridge instances keeps a device id both serve (core/instances.py)."""

from __future__ import annotations

import pytest

from bridge.core.instances import Claims, Conflict, instance_problem

EARLY, LATE = "2026-12-01T10:00:00.000Z", "2026-12-01T10:00:05.000Z"


def claims(started: str = LATE, instance: str = "hall2") -> Claims:
    return Claims(instance, started, frozenset({"a1", "b3"}))


def peer(c: Claims, name: str, started: str, devices: list[str], state: str = "online"
         ) -> None:
    c.on_state(name, state)
    c.on_info(name, {"instance": name, "started_at": started, "devices": devices})


@pytest.mark.parametrize(("ours", "theirs", "name", "state", "lost", "kept"), [
    (LATE, EARLY, "hall1", "online", ["a1"], []),     # they were first: we refuse
    (EARLY, LATE, "hall1", "online", [], ["a1"]),     # we were first: they must refuse
    (LATE, EARLY, "hall1", "offline", [], []),        # not live: no claim
    (EARLY, EARLY, "hall1", "online", ["a1"], []),    # tie: the smaller name keeps it
    (EARLY, EARLY, "hall3", "online", [], ["a1"]),
    (LATE, "", "hall1", "online", ["a1"], []),        # no start time: taken as older
])
def test_who_keeps_a_contested_device(ours, theirs, name, state, lost, kept):
    c = claims(ours)
    peer(c, name, theirs, ["a1", "x9"], state)
    refused, contested = c.settle()
    assert [x.device for x in refused] == lost
    assert [x.device for x in contested] == kept
    assert c.serving == frozenset({"a1", "b3"}) - set(lost)
    assert c.refused == dict.fromkeys(lost, name)


def test_a_refusal_lasts_and_a_kept_device_is_reported_once():
    c = claims(LATE)
    peer(c, "hall1", EARLY, ["a1"])
    assert c.settle()[0] == [Conflict("a1", "hall1", False)]
    c.on_state("hall1", "offline")  # it went away: a1 is still not ours to serve
    assert c.settle() == ([], []) and c.refused == {"a1": "hall1"}
    d = claims(EARLY)
    peer(d, "new", LATE, ["b3"])
    assert d.settle() == ([], [Conflict("b3", "new", True)])
    assert d.settle() == ([], [])  # told once; the newcomer refuses it


@pytest.mark.parametrize("info", [None, "x", [], {"devices": "a1"}, {"devices": [1, None]},
                                  {"started_at": 5, "devices": []}])
def test_malformed_info_claims_nothing(info):
    c = claims()
    c.on_state("hall1", "online")
    c.on_info("hall1", info)
    assert c.settle() == ([], [])


def test_own_messages_are_ignored():
    c = claims(instance="hall2")
    peer(c, "hall2", EARLY, ["a1"])
    assert c.peers == {} and c.settle() == ([], [])


@pytest.mark.parametrize(("name", "ok"), [
    ("hall1", True), ("a-b_c", True), ("x" * 64, True), ("x" * 65, False), ("", False),
    ("a/b", False), ("a b", False), ("info", False), ("state", False), ("sync", False),
])
def test_instance_names(name, ok):
    assert (instance_problem(name) is None) is ok


@pytest.mark.parametrize("instance", [None, "hall2"])
def test_every_instance_topic_is_recognised_before_handling_and_no_command_is(instance):
    """Bridge.handle asks `concerns` first and skips Instances.handle for the rest: it
    must hold every topic the instances subscribe to, and no device command."""
    from bridge.features.instances import Instances
    from bridge.mqtt.topics import Topics

    topics = Topics("modbus", instance)

    async def on_change(refused: list[str], contested: list[str]) -> None:
        raise AssertionError("not called")

    instances = Instances(topics, claims(), on_change)
    for filt in instances.subscriptions():
        for topic in (filt.replace("+", "hall1"), filt.replace("/+", "")):
            assert instances.concerns(topic), topic
    assert instances.concerns(topics.bridge_state) and instances.concerns(topics.bridge_info)
    for device in ("meter", "bridges", "bridgehall", "modbus"):
        for topic in (topics.request(device), topics.set(device), topics.get(device),
                      topics.set(device) + "/power", topics.response(device)):
            assert not instances.concerns(topic), topic
