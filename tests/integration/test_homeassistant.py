"""Home Assistant discovery, the health topic and the metrics, end to end on real
mosquitto with the simulated line (units 1 and 2 answer; `ghost`, unit 3, does not).
What Home Assistant itself makes of it: test_homeassistant_real.py."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import jinja2
import pytest

from tests.broker import REPO, Probe, broker_config, free_port, probe
from tests.conftest import wait_until
from tests.e2e import make_config, running_bridge

CONFIGS = "homeassistant/+/+/+/config"
METER_POINTS = {"h0": "sensor", "h1": "sensor", "h4": "number", "mode": "select",
                "flag": "switch", "relay": "switch", "door": "binary_sensor", "power": "sensor"}


def ha_config(mosquitto_port: int, line_path: str, **overrides: Any) -> dict[str, Any]:
    return make_config(mosquitto_port, line_path, homeassistant={"discovery": True},
                       health_interval=0.5, **overrides)


async def configs(client: Probe, count: int, after: int = 0) -> dict[str, dict[str, Any]]:
    """The discovery configs seen (topic -> config), once `count` distinct ones are in."""
    def seen() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for m in client.seen[after:]:
            if m.topic.startswith("homeassistant/") and m.topic.endswith("/config"):
                if m.payload:
                    found[m.topic] = m.json()
                else:
                    found.pop(m.topic, None)
        return found
    await wait_until(lambda: len(seen()) >= count, timeout=10, what=f"{count} configs")
    return seen()


BRIDGE_ENTITIES = 6  # connectivity + five health sensors
ALL_ENTITIES = BRIDGE_ENTITIES + 2 * len(METER_POINTS) + 1  # meter1, meter2, ghost


@pytest.fixture
async def client(mosquitto):
    async with probe(mosquitto.port) as p:
        yield p


async def test_every_datapoint_is_an_entity_with_stable_unique_ids(mosquitto, line, client):
    async with running_bridge(ha_config(mosquitto.port, line.path)):
        found = await configs(client, ALL_ENTITIES)
    assert len(found) == ALL_ENTITIES
    ids = {c["unique_id"]: topic for topic, c in found.items()}
    assert len(ids) == ALL_ENTITIES  # unique
    for dev in ("meter1", "meter2"):
        for point, component in METER_POINTS.items():
            topic = f"homeassistant/{component}/main_{dev}/{point}/config"
            assert ids[f"main_{dev}_{point}"] == topic
            c = found[topic]
            assert c["device"]["identifiers"] == [f"main_{dev}"]
            assert c["device"]["via_device"] == "main_bridge"
            assert c["availability"] == [{"topic": "modbus/bridge/state"},
                                         {"topic": f"modbus/{dev}/availability"}]
            assert c["availability_mode"] == "all" and c["state_topic"] == f"modbus/{dev}"
    h4 = found["homeassistant/number/main_meter1/h4/config"]
    assert (h4["min"], h4["max"], h4["step"], h4["mode"]) == (0, 100, 0.1, "box")
    assert found["homeassistant/select/main_meter1/mode/config"]["options"] == [
        "auto", "heat", "off"]
    # Stable: a restart publishes the very same configs.
    mark = client.mark()
    async with running_bridge(ha_config(mosquitto.port, line.path)):
        again = await configs(client, ALL_ENTITIES, after=mark)
    assert again == found


def render(template: str, state: dict[str, Any]) -> str:
    return jinja2.Environment().from_string(template).render(value_json=state)


async def test_templates_turn_the_state_json_into_home_assistants_values(mosquitto, line,
                                                                        client):
    async with running_bridge(ha_config(mosquitto.port, line.path)):
        found = await configs(client, ALL_ENTITIES)
        state = (await client.expect("modbus/meter1", lambda m: "door" in m.json())).json()
    values = {c["unique_id"].removeprefix("main_meter1_"): render(c["value_template"], state)
              for c in found.values() if c["unique_id"].startswith("main_meter1_")}
    # meter_unit(1): holding a = 100 + a, coils 0 and 2 on, discrete 1 on, inputs 1000 + a.
    assert values == {"h0": "100", "h1": "101", "h4": "10.4", "mode": "heat",
                      "flag": "OFF", "relay": "ON", "door": "ON",  # 106 has bit 2 clear
                      "power": str(1000 * 65536 + 1001)}


@pytest.mark.parametrize(("point", "payload", "table", "address", "expected"), [
    ("relay", "OFF", "coil", 0, False),
    ("relay", "ON", "coil", 0, True),
    ("flag", "ON", "holding", 6, 106 | 4),  # one bit set, the others kept
    ("h4", "42.5", "holding", 4, 425),
    ("h4", "7", "holding", 4, 70),
    ("mode", "off", "holding", 5, 0),
    ("mode", "auto", "holding", 5, 5),
])
async def test_home_assistant_command_payloads_write_registers(mosquitto, line, client, point,
                                                                payload, table, address,
                                                                expected):
    async with running_bridge(ha_config(mosquitto.port, line.path)):
        found = await configs(client, ALL_ENTITIES)
        command_topic = next(c["command_topic"] for c in found.values()
                             if c["unique_id"] == f"main_meter1_{point}")
        mark = client.mark()
        await client.publish(command_topic, payload)  # as HA does: plain, not retained
        response = (await client.expect("modbus/meter1/response", after=mark)).json()
        assert response["ok"] is True, response
        assert line.unit(1).table(table)[address] == expected


async def test_home_assistants_birth_brings_configs_then_states_again(mosquitto, line, client):
    async with running_bridge(ha_config(mosquitto.port, line.path)) as bridge:
        assert bridge.discovery is not None
        bridge.discovery.birth_delay = (0.05, 0.1)
        await configs(client, ALL_ENTITIES)
        await client.expect("modbus/meter1", lambda m: "door" in m.json())
        mark = client.mark()
        await client.publish("homeassistant/status", "online")
        again = await configs(client, ALL_ENTITIES, after=mark)
        assert len(again) == ALL_ENTITIES
        state = await client.expect("modbus/meter1", after=mark)
        last_config = max(i for i, m in enumerate(client.seen) if m.topic.endswith("/config"))
        assert client.seen.index(state) > last_config  # states after the configs
        # A retained `online` (an old birth) is not a new HA start: nothing again.
        mark = client.mark()
        await client.publish("homeassistant/status", "offline")
        await client.publish("homeassistant/status", "online", retain=True)
        await client.publish("homeassistant/status", "", retain=True)
        await client.expect("modbus/bridge/health", after=client.mark(), timeout=5)
        await client.expect("modbus/bridge/health", after=client.mark(), timeout=5)
        assert not [m for m in client.seen[mark:] if m.topic.endswith("/config")]


async def test_configs_of_removed_devices_and_datapoints_are_cleared_on_start(
        mosquitto, line, client):
    async with running_bridge(ha_config(mosquitto.port, line.path)):
        await configs(client, ALL_ENTITIES)
    smaller = ha_config(mosquitto.port, line.path)
    smaller["devices"] = smaller["devices"][:1]  # meter1 only ...
    smaller["devices"][0]["datapoints"] = smaller["devices"][0]["datapoints"][:-1]  # no power
    # ... and a stranger's config under the same prefix, which must stay.
    await client.publish("homeassistant/sensor/other/x/config",
                         json.dumps({"unique_id": "main_x", "device": {"identifiers": ["y"]}}),
                         retain=True)
    mark = client.mark()
    async with running_bridge(smaller):
        await wait_until(lambda: sum(1 for m in client.seen[mark:]
                                     if m.topic.endswith("/config") and not m.payload)
                         >= len(METER_POINTS) + 2, timeout=10, what="stale configs cleared")
    cleared = {m.topic for m in client.seen[mark:] if m.topic.endswith("/config")
               and not m.payload}
    assert cleared == {f"homeassistant/{c}/main_meter2/{p}/config"
                       for p, c in METER_POINTS.items()} | {
        "homeassistant/sensor/main_ghost/h0/config",
        "homeassistant/sensor/main_meter1/power/config"}
    async with probe(mosquitto.port, CONFIGS) as late:  # what HA would find now
        remaining = await configs(late, BRIDGE_ENTITIES + len(METER_POINTS) - 1 + 1)
    assert "homeassistant/sensor/other/x/config" in remaining
    assert not any("meter2" in topic or "ghost" in topic for topic in remaining)


async def test_health_is_published_with_counters_per_port_and_device(mosquitto, line, client):
    async with running_bridge(ha_config(mosquitto.port, line.path)):
        await client.expect("modbus/ghost/availability", lambda m: m.text == "offline")
        health = (await client.expect(
            "modbus/bridge/health", lambda m: m.json()["devices"]["ghost"]["timeouts"] >= 2
            and m.json()["devices"]["meter1"]["requests"] >= 2)).json()
    assert health["ts"].endswith("Z") and health["uptime_s"] >= 0
    assert health["mqtt"]["connected"] is True and health["mqtt"]["connects"] == 1
    # Received: the retained discovery configs the broker hands back (stale-config check).
    assert health["mqtt"]["published"] > 0 and health["mqtt"]["received"] >= 0
    assert (health["devices_online"], health["devices_total"]) == (2, 3)
    meter, ghost = health["devices"]["meter1"], health["devices"]["ghost"]
    (port_name,) = health["ports"]
    assert meter["online"] is True and meter["port"] == port_name and meter["unit"] == 1
    assert meter["last_success"].endswith("Z")
    assert 0 < meter["latency_ms"]["p50"] <= meter["latency_ms"]["p99"] < 1000
    assert ghost["online"] is False and ghost["last_success"] is None
    assert ghost["errors"]["timeout"] == ghost["timeouts"] and ghost["requests"] >= 2
    assert ghost["latency_ms"] == {"p50": None, "p99": None}
    (port,) = health["ports"].values()
    assert port["devices"] == ["ghost", "meter1", "meter2"]
    assert port["requests"] == sum(d["requests"] for d in health["devices"].values())
    assert port["timeouts"] == health["totals"]["timeouts"] >= ghost["timeouts"]
    assert port["queue_depth"] >= 0 and port["reopens"] == 0


async def get(port: int, path: str) -> tuple[str, str]:
    """(status line, body) of a GET: the server runs in this test's event loop, so a
    blocking client (urllib) would wait for an answer the blocked loop cannot give."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert "Content-Type: text/plain; version=" in head or not head.startswith("HTTP/1.1 200")
    return head.split("\r\n", 1)[0], body


async def scrape(port: int) -> dict[str, float]:
    status, text = await get(port, "/metrics")
    assert status == "HTTP/1.1 200 OK", status
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_metrics_count_a_dead_unit(mosquitto, line):
    port = free_port()
    config = make_config(mosquitto.port, line.path, metrics={"port": port})
    ghost_timeouts = 'modbus_bridge_device_errors_total{code="timeout",device="ghost"}'
    async with running_bridge(config) as bridge:
        await wait_until(lambda: bridge.link.connected.is_set(), what="connected")

        async def meter_up() -> bool:
            return (await scrape(port)).get('modbus_bridge_device_up{device="meter1"}') == 1
        await wait_until(meter_up, timeout=10, what="meter1 up")
        await wait_until(lambda: bridge.runners["ghost"].online is False, what="ghost down")
        first = await scrape(port)

        async def ghost_counts() -> bool:
            return (await scrape(port)).get(ghost_timeouts, 0) > first.get(ghost_timeouts, 0)
        await wait_until(ghost_counts, timeout=10, what="ghost's timeouts to grow")
        second = await scrape(port)
        assert (await get(port, "/"))[0] == "HTTP/1.1 404 Not Found"
        path = bridge.wrappers["meter1"].identifier
    assert second['modbus_bridge_device_up{device="ghost"}'] == 0
    assert second['modbus_bridge_device_up{device="meter1"}'] == 1
    assert 'modbus_bridge_device_last_success_timestamp_seconds{device="ghost"}' not in second
    assert second['modbus_bridge_device_last_success_timestamp_seconds{device="meter1"}'] > \
        1.7e9
    assert second[f'modbus_bridge_port_requests_total{{port="{path}"}}'] > \
        first[f'modbus_bridge_port_requests_total{{port="{path}"}}']
    assert second[f'modbus_bridge_port_errors_total{{code="timeout",port="{path}"}}'] >= \
        second['modbus_bridge_device_errors_total{code="timeout",device="ghost"}']
    count = second[f'modbus_bridge_port_transaction_duration_seconds_count{{port="{path}"}}']
    assert count == second[f'modbus_bridge_port_transaction_duration_seconds_bucket'
                           f'{{le="+Inf",port="{path}"}}'] > 0
    assert second[f'modbus_bridge_port_queue_depth{{port="{path}"}}'] >= 0
    assert second[f'modbus_bridge_port_reopens_total{{port="{path}"}}'] == 0
    assert second["modbus_bridge_mqtt_connected"] == 1
    assert second["modbus_bridge_mqtt_messages_published_total"] > 0
    assert any(re.fullmatch(r'modbus_bridge_build_info\{version="[^"]+"\}', k) for k in second)
    assert not any("datapoint" in k or "h0" in k for k in second)  # no datapoint labels


async def test_metrics_are_off_by_default_and_bind_loopback(mosquitto, line):
    from bridge.app import Bridge
    from bridge.config.load import validate_config
    config = make_config(mosquitto.port, line.path)
    assert Bridge(validate_config(config)).metrics is None
    on = Bridge(validate_config({**config, "metrics": {"port": 9}})).metrics
    assert on is not None and (on.host, on.port) == ("127.0.0.1", 9)


async def test_the_shipped_acl_lets_the_bridge_and_home_assistant_do_discovery(tmp_path, line):
    from tests.integration.test_security import broker, password_file  # its helpers

    passwd = password_file(tmp_path / "passwd", {"bridge": "b-pw", "homeassistant": "ha-pw"})
    port = free_port()
    text = broker_config((REPO / "mosquitto.conf").read_text(), {1883: port})
    text = "\n".join(f"password_file {passwd}" if row.startswith("password_file ") else row
                     for row in text.splitlines())
    # A stale config of ours from an earlier run, left retained on the broker.
    stale = "homeassistant/sensor/main_gone/x/config"
    config = ha_config(port, line.path, mqtt={"username": "bridge", "password": "b-pw"})
    with broker(tmp_path, text, port):
        async with probe(port, username="bridge", password="b-pw", subscribe="nothing") as b:
            await b.publish(stale, json.dumps({"unique_id": "main_gone_x", "device": {
                "identifiers": ["main_gone"], "via_device": "main_bridge"}}), retain=True)
        async with running_bridge(config) as bridge, \
                probe(port, username="homeassistant", password="ha-pw",
                      subscribe="homeassistant/#") as home:
            assert bridge.discovery is not None
            bridge.discovery.birth_delay = (0.0, 0.01)
            found = await configs(home, ALL_ENTITIES)  # HA may read them ...
            await home.expect(stale, lambda m: m.payload == b"")  # ... the bridge clears
            mark = home.mark()
            await home.publish("homeassistant/status", "online")  # ... HA may announce
            await configs(home, ALL_ENTITIES, after=mark)
            relay = found["homeassistant/switch/main_meter1/relay/config"]
            await home.publish(relay["command_topic"], "OFF")  # ... and command
            await wait_until(lambda: line.unit(1).coil[0] is False, what="relay off")


async def test_a_device_another_instance_holds_is_withdrawn(mosquitto, line, client):
    async with running_bridge(ha_config(mosquitto.port, line.path)) as bridge:
        await configs(client, ALL_ENTITIES)
        assert bridge.discovery is not None
        mark = client.mark()
        await bridge.discovery.withdraw(["meter2"])
        await wait_until(lambda: len([m for m in client.seen[mark:] if not m.payload])
                         == len(METER_POINTS), what="meter2's configs cleared")
        assert {m.topic for m in client.seen[mark:] if m.topic.endswith("/config")} == {
            f"homeassistant/{c}/main_meter2/{p}/config" for p, c in METER_POINTS.items()}
