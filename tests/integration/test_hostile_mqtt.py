"""Messages that used to take the bridge off the broker or let a sender write where the
bridge's word counts (issue 9, items 1-3), against a real mosquitto and the bridge
in-process: U+FEFF in v5 properties, Response Topics aimed at the bridge's own
topics, and packets bigger than the bridge's announced Maximum Packet Size."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.core.payload import MAX_PAYLOAD
from bridge.modbus.simulator import SimulatedLine
from bridge.mqtt.inbox import Inbound
from bridge.mqtt.link import MAX_PACKET
from tests.broker import Mosquitto, Probe, probe
from tests.conftest import TcpGateway, wait_until
from tests.e2e import make_config, points_meter, running_bridge

READ = {"op": "read_holding_registers", "address": 0, "count": 2}


async def online(p: Probe, device: str = "meter1") -> None:
    await p.expect(f"modbus/{device}/availability", lambda m: m.text == "online")


def by_id(rid: str) -> Any:
    return lambda m: m.json().get("id") == rid


def bridge_states(p: Probe, mark: int) -> list[str]:
    return [m.text for m in p.seen[mark:] if m.topic == "modbus/bridge/state"]


async def send_with_props(p: Probe, topic: str, body: dict[str, Any], *, retain: bool = False,
                          response_topic: str | None = None,
                          user: tuple[str, str] | None = None) -> None:
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if user is not None:
        props.UserProperty = [user]
    props.CorrelationData = b"corr"
    await p.client.publish(topic, json.dumps(body), qos=1, retain=retain, properties=props)


# -- 1. U+FEFF in v5 properties ---------------------------------------------------------

@pytest.mark.parametrize("where", ["response_topic", "user_property"])
async def test_bom_in_v5_properties_is_answered_and_the_link_stays_up(
        mosquitto: Mosquitto, line: SimulatedLine, where: str) -> None:
    config = make_config(mosquitto.port, line.path)
    async with running_bridge(config) as bridge, probe(mosquitto.port) as p:
        await online(p)
        mark = p.mark()
        connects = bridge.link.connects
        kw: dict[str, Any] = {"response_topic": "replies/me/\ufeffx"} \
            if where == "response_topic" else {"user": ("k\ufeff", "\ufeffv")}
        await send_with_props(p, "modbus/meter1/request", {"id": "bom", **READ}, **kw)
        answer = await p.expect("modbus/meter1/response", by_id("bom"), after=mark)
        assert answer.json()["registers"] == [100, 101]
        if where == "response_topic":
            reply = await p.expect("replies/me/\ufeffx", after=mark)
            assert reply.json()["id"] == "bom"
            assert reply.properties.CorrelationData == b"corr"
        # The same command retained: dropped (never run), the link still up.
        await send_with_props(p, "modbus/meter1/request", {"id": "bom-retained", **READ},
                              retain=True, **kw)
        after = await p.request("meter1", {"id": "after", **READ})
        assert after["ok"] is True
        assert bridge.link.connects == connects, "the bridge reconnected"
        assert bridge_states(p, mark) == []
        assert not [m for m in p.seen[mark:] if b"bom-retained" in m.payload
                    and m.topic == "modbus/meter1/response"]
        await p.client.publish("modbus/meter1/request", b"", retain=True)  # clean up


async def test_reconnect_causes_are_all_logged(
        mosquitto: Mosquitto, line: SimulatedLine, caplog: pytest.LogCaptureFixture) -> None:
    """Each lost connection is logged (not 1 in 10), within a bounded budget."""
    caplog.set_level(logging.WARNING, logger="bridge.mqtt.link")
    config = make_config(mosquitto.port, line.path,
                         mqtt={"reconnect_min": 0.3, "reconnect_max": 0.3})
    async with running_bridge(config) as bridge:
        for n in range(1, 4):
            await wait_until(lambda n=n: bridge.link.connects == n, timeout=10, what="connected")
            mosquitto.stop()
            mosquitto.start()
            # 25 s: a connect that races the broker's start can wait for aiomqtt's
            # 10 s CONNACK timeout before its retry.
            await wait_until(lambda n=n: bridge.link.connects == n + 1, timeout=25,
                             what="reconnected")
            lost = [r.getMessage() for r in caplog.records if "Disconnected" in r.getMessage()]
            assert len(lost) == n, lost


async def test_retained_commands_log_short_lines_within_a_budget(
        mosquitto: Mosquitto, line: SimulatedLine, caplog: pytest.LogCaptureFixture) -> None:
    """30 retained commands on 60 KB topics: at most 10 log lines, each short."""
    caplog.set_level(logging.WARNING, logger="bridge.app")
    config = make_config(mosquitto.port, line.path)
    topics = [f"modbus/meter1/set/{'x' * 60_000}{n}" for n in range(30)]
    async with running_bridge(config), probe(mosquitto.port, subscribe="modbus/+/+") as p:
        await online(p)
        for topic in topics:
            await p.publish(topic, "1", retain=True)
        await p.request("meter1", {"id": "after", **READ})  # the bridge saw them all
        lines = [r.getMessage() for r in caplog.records if "retained" in r.getMessage()]
        assert 1 <= len(lines) <= 10, len(lines)
        assert all(len(text) < 400 for text in lines), [len(text) for text in lines]
        for topic in topics:  # clean up the broker's retained store
            await p.publish(topic, b"", retain=True)


# -- 2. Response Topics ------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "modbus/meter1/availability", "modbus/bridge/state", "modbus/meter2/response",
    "other/meter1/set/h4", "homeassistant/sensor/x/config", "modbus/meter1",
])
async def test_replies_go_only_under_the_reply_prefix(
        mosquitto: Mosquitto, line: SimulatedLine, target: str) -> None:
    config = make_config(mosquitto.port, line.path)
    async with running_bridge(config), probe(mosquitto.port) as p:
        await online(p)
        await online(p, "meter2")
        mark = p.mark()
        await send_with_props(p, "modbus/meter1/request", {"id": "forge", **READ},
                              response_topic=target)
        answer = (await p.expect("modbus/meter1/response", by_id("forge"), after=mark)).json()
        assert answer["ok"] is True
        assert "replies/" in answer["reply_refused"], answer
        # A command after it: had the reply been published, it would have arrived first.
        await p.request("meter1", {"id": "later", **READ})
        assert [m.topic for m in p.seen[mark:] if b'"forge"' in m.payload
                and m.topic != "modbus/meter1/request"] == ["modbus/meter1/response"]

        mark = p.mark()
        await send_with_props(p, "modbus/meter1/request", {"id": "fine", **READ},
                              response_topic="replies/me/1")
        reply = await p.expect("replies/me/1", after=mark)
        assert reply.json()["id"] == "fine" and "reply_refused" not in reply.json()


async def test_another_bridges_command_topic_is_not_written_through_a_reply(
        mosquitto: Mosquitto, line: SimulatedLine, gateway: TcpGateway) -> None:
    """Two bridges on one broker: a reply aimed at the other's set topic runs nothing."""
    first = make_config(mosquitto.port, line.path)
    second = make_config(mosquitto.port, line.path, gateway.port,
                         mqtt={"base_topic": "other", "client_id": "second"})
    second["devices"] = [{**d, "datapoints": points_meter()} for d in second["devices"]
                         if d["id"] == "plc"]
    async with running_bridge(first), running_bridge(second), probe(mosquitto.port) as p:
        await online(p)
        await p.expect("other/plc/availability", lambda m: m.text == "online")
        mark = p.mark()
        before = gateway.bus.units[1].holding[4]
        await send_with_props(p, "modbus/meter1/request",
                              {"id": "x", "op": "write", "values": {"h4": 5}},
                              response_topic="other/plc/set/h4")
        answer = (await p.expect("modbus/meter1/response", by_id("x"), after=mark)).json()
        assert answer["reply_refused"]
        after = await p.request("plc", {"id": "y", **READ}, base="other")
        assert after["ok"] is True
        assert [m.json()["id"] for m in p.seen[mark:] if m.topic == "other/plc/response"] \
            == ["y"]
        assert gateway.bus.units[1].holding[4] == before


# -- 3. Maximum Packet Size -------------------------------------------------------------

async def test_packets_over_the_announced_maximum_never_reach_the_bridge(
        mosquitto: Mosquitto, line: SimulatedLine) -> None:
    config = make_config(mosquitto.port, line.path)
    async with running_bridge(config) as bridge, probe(mosquitto.port) as p:
        await online(p)
        seen: list[int] = []
        original = bridge.handle

        async def handle(message: Inbound) -> None:
            seen.append(len(message.payload))
            await original(message)

        bridge.handle = handle  # type: ignore[method-assign]
        mark = p.mark()
        big = b'{"id": "huge", "op": "read", "x": "' + b"A" * (MAX_PACKET + 1000) + b'"}'
        await p.publish("modbus/meter1/request", big)
        # Just over the payload limit but under the packet limit: answered "too large".
        near = b'{"id": "near", "op": "read", "x": "' + b"A" * (MAX_PAYLOAD + 10) + b'"}'
        await p.publish("modbus/meter1/request", near)
        answer = (await p.expect("modbus/meter1/response", after=mark,
                                 where=lambda m: m.json()["error"]["code"] == "invalid_request"
                                 if not m.json()["ok"] else False)).json()
        assert str(MAX_PAYLOAD) in answer["error"]["message"]
        assert (await p.request("meter1", {"id": "after", **READ}))["ok"] is True
        assert max(seen) < MAX_PACKET, seen  # the huge one was never delivered
        assert len(seen) == 2, seen
