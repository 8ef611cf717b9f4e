"""Home Assistant discovery as pure data: which component a datapoint becomes, the
device and state classes it gets, the combinations refused at config load (with the
field path), and the discovery configs, their templates rendered as HA renders them."""

from __future__ import annotations

import json
from typing import Any

import jinja2
import pytest

from bridge.config.load import Config, validate_config
from bridge.core import ha_classes
from bridge.core.errors import ConfigError
from bridge.core.ha_classes import Component
from bridge.core.points import DataType
from bridge.features.homeassistant import Discovery, Entity, fold
from bridge.mqtt.topics import Topics

B, I16, S, F32 = DataType.BOOL, DataType.INT16, DataType.STRING, DataType.FLOAT32


@pytest.mark.parametrize(("kind", "writable", "mapped", "expected"), [
    (F32, False, False, Component.SENSOR),
    (S, False, False, Component.SENSOR),
    (I16, False, True, Component.ENUM),
    (B, False, False, Component.BINARY_SENSOR),
    (I16, True, False, Component.NUMBER),
    (F32, True, False, Component.NUMBER),
    (B, True, False, Component.SWITCH),
    (I16, True, True, Component.SELECT),
    (S, True, False, Component.TEXT),
])
def test_component_by_type_and_direction(kind, writable, mapped, expected):
    assert ha_classes.component_of(kind, writable, mapped) is expected


@pytest.mark.parametrize(("kind", "unit", "explicit", "expected"), [
    (Component.SENSOR, "kWh", {}, ("energy", "total_increasing")),
    (Component.SENSOR, "Wh", {}, ("energy", "total_increasing")),
    (Component.SENSOR, "W", {}, ("power", "measurement")),
    (Component.SENSOR, "kW", {}, ("power", "measurement")),
    (Component.SENSOR, "°C", {}, ("temperature", "measurement")),
    (Component.SENSOR, "V", {}, ("voltage", "measurement")),
    (Component.SENSOR, "A", {}, ("current", "measurement")),
    (Component.SENSOR, "Hz", {}, ("frequency", "measurement")),
    (Component.SENSOR, "bar", {}, ("pressure", "measurement")),
    (Component.SENSOR, "%", {}, (None, "measurement")),  # humidity? battery? the user says
    (Component.SENSOR, None, {}, (None, "measurement")),
    (Component.SENSOR, "kWh", {"state_class": "total"}, ("energy", "total")),
    (Component.SENSOR, "kWh", {"device_class": None}, (None, "measurement")),
    (Component.SENSOR, "kWh", {"device_class": "energy_storage"},
     ("energy_storage", "measurement")),
    (Component.SENSOR, "EUR", {"device_class": "monetary"}, ("monetary", None)),
    (Component.SENSOR, "%", {"device_class": "humidity"}, ("humidity", "measurement")),
    (Component.NUMBER, "°C", {}, ("temperature", None)),  # numbers have no state class
    (Component.ENUM, "V", {}, ("enum", None)),
    (Component.SELECT, None, {}, (None, None)),
    (Component.BINARY_SENSOR, None, {"device_class": "door"}, ("door", None)),
    (Component.SWITCH, None, {}, (None, None)),
])
def test_classes_default_from_the_unit(kind, unit, explicit, expected):
    assert ha_classes.classes(kind, unit, True, explicit) == expected


def test_strings_get_no_state_class():
    assert ha_classes.classes(Component.SENSOR, None, False, {}) == (None, None)


def config(point: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**extra, "devices": [{
        "id": "meter1", "serial": {"port": "/dev/ttyUSB0", "parity": "N"}, "unit": 1,
        "datapoints": [{"name": "p", "table": "holding", "address": 0, "type": "uint16",
                        **point}]}]}


FIELD = "devices[0].datapoints[0].homeassistant."


@pytest.mark.parametrize(("point", "field", "fragment"), [
    ({"unit": "V", "homeassistant": {"device_class": "energy"}}, "device_class",
     "device class 'energy' needs unit GJ, GWh"),
    ({"unit": "kWh", "homeassistant": {"state_class": "measurement"}}, "state_class",
     "'measurement' does not fit device class 'energy' (allowed: total, total_increasing)"),
    ({"homeassistant": {"device_class": "power"}}, "device_class",
     "the datapoint's unit is not set"),
    ({"unit": "W", "homeassistant": {"device_class": "wattage"}}, "device_class",
     "'wattage' is not a device class"),
    ({"type": "bool", "homeassistant": {"device_class": "voltage"}}, "device_class",
     "for a binary_sensor"),
    ({"type": "bool", "writable": True, "homeassistant": {"device_class": "door"}},
     "device_class", "allowed: outlet, switch"),
    ({"writable": True, "unit": "°C", "homeassistant": {"state_class": "measurement"}},
     "state_class", "this one is a number"),
    ({"values": {0: "off", 1: "on"}, "homeassistant": {"device_class": "power"}},
     "device_class", "allowed: enum"),
    ({"values": {0: "off", 1: "on"}, "homeassistant": {"state_class": "measurement"}},
     "state_class", "this one is a sensor"),
    ({"values": {0: "a"}, "writable": True, "homeassistant": {"device_class": "enum"}},
     "device_class", "allowed: none"),
    ({"type": "string", "length": 4, "homeassistant": {"device_class": "voltage"}},
     "device_class", "allowed: date, timestamp"),
    ({"unit": "°", "homeassistant": {"device_class": "wind_direction",
                                     "state_class": "measurement"}},
     "state_class", "allowed: measurement_angle"),
    ({"homeassistant": {"entity_category": "main"}}, "entity_category", "'config' or"),
    ({"homeassistant": {"state_class": "sum"}}, "state_class", "'measurement'"),
])
def test_combinations_home_assistant_rejects_are_config_errors(point, field, fragment):
    with pytest.raises(ConfigError) as info:
        validate_config(config(point))
    assert any(path == FIELD + field and fragment in message
               for path, message in info.value.problems), info.value.problems


@pytest.mark.parametrize("point", [
    {"unit": "kWh"}, {"unit": "furlong"}, {"unit": "%", "homeassistant": {"device_class":
                                                                        "battery"}},
    {"unit": "kWh", "homeassistant": {"device_class": "energy", "state_class": "total"}},
    {"unit": "EUR", "homeassistant": {"device_class": "monetary", "state_class": "total"}},
    {"type": "bool", "homeassistant": {"device_class": "problem"}},
    {"type": "bool", "writable": True, "homeassistant": {"device_class": "outlet"}},
    {"values": {0: "a"}, "homeassistant": {"device_class": "enum"}},
    {"values": {0: "a"}, "unit": "V"},  # a map's unit is not sent: fine
    {"homeassistant": {"enabled": False, "entity_category": "diagnostic"}},
])
def test_combinations_home_assistant_accepts(point):
    validate_config(config(point))


# -- discovery configs ------------------------------------------------------------------

DEVICE = {"id": "heat-pump", "name": "Heat pump", "manufacturer": "ACME", "model": "HP 9",
          "serial": {"port": "/dev/ttyUSB0", "parity": "N"}, "unit": 2, "datapoints": [
              {"name": "flow", "table": "input", "address": 0, "type": "int16", "scale": 0.1,
               "unit": "°C", "label": "Flow temperature"},
              {"name": "energy", "table": "input", "address": 1, "type": "uint32",
               "unit": "kWh", "homeassistant": {"entity_category": "diagnostic"}},
              {"name": "serial", "table": "input", "address": 3, "type": "string",
               "length": 4},
              {"name": "state", "table": "input", "address": 7, "type": "uint16",
               "values": {0: "idle", 1: "heating", 2: "defrost"}},
              {"name": "alarm", "table": "discrete", "address": 0, "type": "bool",
               "homeassistant": {"device_class": "problem", "enabled": False}},
              {"name": "setpoint", "table": "holding", "address": 100, "type": "int16",
               "scale": 0.5, "unit": "°C", "writable": True, "min": 5, "max": 60},
              {"name": "limit", "table": "holding", "address": 101, "type": "uint16",
               "writable": True},
              {"name": "gain", "table": "holding", "address": 102, "type": "float32",
               "writable": True},
              {"name": "pump", "table": "coil", "address": 0, "type": "bool", "writable": True},
              {"name": "mode", "table": "holding", "address": 104, "type": "uint16",
               "values": {0: "off", 1: "heat", 2: "cool"}, "writable": True},
              {"name": "label", "table": "holding", "address": 105, "type": "string",
               "length": 8, "writable": True},
          ]}


def discovery(**extra: Any) -> Discovery:
    cfg: Config = validate_config({"homeassistant": {"discovery": True},
                                   "mqtt": {"base_topic": "site/modbus"},
                                   "devices": [DEVICE], **extra})
    return Discovery(cfg, Topics(cfg.mqtt.base_topic))


def by_key(entities: list[Entity]) -> dict[str, Entity]:
    return {e.unique_id.removeprefix("main_heat-pump_"): e for e in entities}


def test_one_config_per_datapoint_at_its_topic():
    d = discovery()
    entities = by_key(list(d.device_entities(d.config.devices[0])))
    assert {k: e.topic for k, e in entities.items()} == {
        "flow": "homeassistant/sensor/main_heat-pump/flow/config",
        "energy": "homeassistant/sensor/main_heat-pump/energy/config",
        "serial": "homeassistant/sensor/main_heat-pump/serial/config",
        "state": "homeassistant/sensor/main_heat-pump/state/config",
        "alarm": "homeassistant/binary_sensor/main_heat-pump/alarm/config",
        "setpoint": "homeassistant/number/main_heat-pump/setpoint/config",
        "limit": "homeassistant/number/main_heat-pump/limit/config",
        "gain": "homeassistant/number/main_heat-pump/gain/config",
        "pump": "homeassistant/switch/main_heat-pump/pump/config",
        "mode": "homeassistant/select/main_heat-pump/mode/config",
        "label": "homeassistant/text/main_heat-pump/label/config",
    }


def test_common_fields():
    d = discovery()
    flow = by_key(list(d.device_entities(d.config.devices[0])))["flow"].config
    assert flow["unique_id"] == "main_heat-pump_flow"
    assert flow["default_entity_id"] == "sensor.main_heat_pump_flow"
    assert flow["object_id"] == "main_heat_pump_flow"
    assert flow["name"] == "Flow temperature"
    assert flow["origin"]["name"] == "modbus-mqtt-bridge" and flow["origin"]["sw"]
    assert flow["device"] == {"identifiers": ["main_heat-pump"], "name": "Heat pump",
                              "manufacturer": "ACME", "model": "HP 9",
                              "via_device": "main_bridge"}
    assert flow["availability"] == [{"topic": "site/modbus/bridge/state"},
                                    {"topic": "site/modbus/heat-pump/availability"}]
    assert flow["availability_mode"] == "all"
    assert flow["state_topic"] == "site/modbus/heat-pump"
    assert (flow["unit_of_measurement"], flow["device_class"], flow["state_class"],
            flow["suggested_display_precision"]) == ("°C", "temperature", "measurement", 1)


def test_component_specific_fields():
    d = discovery()
    e = {k: v.config for k, v in by_key(list(d.device_entities(d.config.devices[0]))).items()}
    assert (e["energy"]["device_class"], e["energy"]["state_class"],
            e["energy"]["entity_category"], e["energy"]["suggested_display_precision"]) == (
        "energy", "total_increasing", "diagnostic", 0)
    assert "unit_of_measurement" not in e["serial"] and "state_class" not in e["serial"]
    assert (e["state"]["device_class"], e["state"]["options"]) == (
        "enum", ["idle", "heating", "defrost"])
    assert "state_class" not in e["state"] and "unit_of_measurement" not in e["state"]
    assert (e["alarm"]["device_class"], e["alarm"]["enabled_by_default"]) == ("problem", False)
    assert (e["alarm"]["payload_on"], e["alarm"]["payload_off"]) == ("ON", "OFF")
    sp = e["setpoint"]
    assert (sp["min"], sp["max"], sp["step"], sp["mode"]) == (5, 60, 0.5, "box")
    assert sp["command_topic"] == "site/modbus/heat-pump/set/setpoint"
    assert (sp["device_class"], sp["unit_of_measurement"]) == ("temperature", "°C")
    assert "state_class" not in sp
    assert (e["limit"]["min"], e["limit"]["max"], e["limit"]["step"]) == (0, 65535, 1)
    assert e["gain"]["step"] == 0.001 and e["gain"]["max"] == 3.4028234663852886e38
    assert (e["pump"]["payload_on"], e["pump"]["command_topic"]) == (
        "ON", "site/modbus/heat-pump/set/pump")
    assert e["mode"]["options"] == ["off", "heat", "cool"]
    assert e["label"]["max"] == 16


def render(template: str, state: dict[str, Any]) -> str:
    """As HA does: the payload parsed as `value_json`."""
    return jinja2.Environment().from_string(template).render(value_json=state)


@pytest.mark.parametrize(("point", "state", "expected"), [
    ("flow", {"flow": 21.5}, "21.5"),
    ("flow", {"flow": None}, "None"),          # NaN from the device: unknown
    ("flow", {}, "None"),                       # not read yet: unknown
    ("energy", {"energy": 123456}, "123456"),
    ("serial", {"serial": "AB12"}, "AB12"),
    ("state", {"state": "heating"}, "heating"),
    ("state", {"state": 7}, "None"),            # raw value outside the map
    ("alarm", {"alarm": True}, "ON"),
    ("alarm", {"alarm": False}, "OFF"),
    ("alarm", {}, "None"),
    ("pump", {"pump": False}, "OFF"),
    ("mode", {"mode": "cool"}, "cool"),
    ("setpoint", {"setpoint": 21.5}, "21.5"),
])
def test_templates_give_home_assistant_its_values(point, state, expected):
    d = discovery()
    entity = by_key(list(d.device_entities(d.config.devices[0])))[point]
    body = {**state, "last_seen": "2026-11-23T20:01:02.345Z"}
    assert render(entity.config["value_template"], json.loads(json.dumps(body))) == expected


def test_the_bridge_is_a_device_with_connectivity_and_health():
    d = discovery()
    bridge = {e.unique_id: e for e in d.bridge_entities()}
    conn = bridge["main_bridge_connectivity"]
    assert conn.topic == "homeassistant/binary_sensor/main_bridge/connectivity/config"
    assert conn.config["state_topic"] == "site/modbus/bridge/state"
    assert (conn.config["payload_on"], conn.config["payload_off"]) == ("online", "offline")
    assert "availability" not in conn.config  # it must be able to say offline
    assert conn.config["device"]["identifiers"] == ["main_bridge"]
    uptime = bridge["main_bridge_uptime"].config
    assert uptime["state_topic"] == "site/modbus/bridge/health"
    assert uptime["entity_category"] == "diagnostic"
    health = {"uptime_s": 12.6, "devices_online": 1,
              "totals": {"requests": 5, "errors": 2, "timeouts": 1}}
    assert render(uptime["value_template"], health) == "13.0"
    assert render(bridge["main_bridge_errors"].config["value_template"], health) == "2"


def test_no_health_sensors_without_a_health_topic():
    d = discovery(health_interval=0)
    assert [e.unique_id for e in d.bridge_entities()] == ["main_bridge_connectivity"]


def test_ids_are_unique_and_the_bridge_comes_first():
    entities = discovery().entities()
    assert entities[0].unique_id == "main_bridge_connectivity"
    assert len({e.unique_id for e in entities}) == len(entities)
    assert len({e.topic for e in entities}) == len(entities)


def test_instance_goes_into_ids_and_nodes():
    d = discovery(bridge={"instance": "garage"})
    entities = {e.unique_id: e for e in d.entities()}
    flow = entities["garage_heat-pump_flow"]
    assert flow.topic == "homeassistant/sensor/garage_heat-pump/flow/config"
    assert flow.config["device"]["via_device"] == "garage_bridge"
    assert entities["garage_bridge_connectivity"].config["device"]["name"] == \
        "Modbus bridge garage"


@pytest.mark.parametrize(("text", "expected"), [
    ("main_meter1", "main_meter1"), ("a/b+c#d", "a_b_c_d"), ("Zähler 1", "Z_hler_1"),
])
def test_node_is_folded(text, expected):
    assert fold(text) == expected


def test_what_counts_as_ours():
    d = discovery()
    ours = d.entities()[-1].config
    assert d.is_ours(ours)
    assert d.is_ours(d.entities()[0].config)  # the bridge's own entities
    assert not d.is_ours({**ours, "unique_id": "other_heat-pump_flow"})
    assert not d.is_ours({**ours, "device": {**ours["device"], "via_device": "x_bridge"}})
    assert not d.is_ours("not a config") and not d.is_ours({"unique_id": "main_x"})


def test_a_write_only_datapoint_has_no_state_topic():
    device = {**DEVICE, "datapoints": [{"name": "reset", "table": "coil", "address": 9,
                                        "type": "bool", "writable": True, "read": False}]}
    cfg = validate_config({"devices": [device]})
    (entity,) = Discovery(cfg, Topics("modbus")).device_entities(cfg.devices[0])
    # Without a state topic HA keeps what it last commanded (optimistic mode).
    assert "state_topic" not in entity.config and "value_template" not in entity.config
    assert entity.config["command_topic"] == "modbus/heat-pump/set/reset"


def test_only_the_devices_asked_for():
    d = discovery()
    assert {e.unique_id for e in d.entities([], bridge=False)} == set()
    assert len(d.entities([])) == 6  # the bridge's own
    assert len(d.entities(["heat-pump"], bridge=False)) == len(DEVICE["datapoints"])
