"""The config contract (config.md): the file, the environment over it, and every rule
the validator enforces, each reported at the exact field path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bridge.config.load import Config, config_json_schema, load_config, validate_config
from bridge.core.errors import ConfigError
from bridge.core.points import DataType, Order, Table

# config.md's example, with parity N (as on the test machines' ptys).
EXAMPLE = """
mqtt:
  host: localhost
  port: 1883
  username: null
  password: null
  client_id: modbus-bridge
  base_topic: modbus
  protocol: 5                 # 5 or 3.1.1
  qos: 1
  keepalive: 30
  per_datapoint_topics: true
  tls: null                   # or {ca_file, cert_file, key_file, insecure: false}

homeassistant:
  discovery: false
  prefix: homeassistant

health_interval: 60           # seconds, 0 = off

devices:
  - id: meter1                # [A-Za-z0-9_-]+, unique; used in topics
    name: Main meter          # optional, for humans and HA
    serial:                   # exactly one of serial / tcp
      port: /dev/ttyUSB0      # devices naming the same port share one client
      baudrate: 9600
      parity: N               # N | E | O
      stopbits: 1
      bytesize: 8
    unit: 1                   # Modbus unit (slave) id, 1..247
    timeout: 0.5              # seconds per attempt
    retries: 1
    offline_after: 3          # consecutive failures before availability=offline
    poll_interval: 5          # seconds; 0 = no polling (commands only)
    address_base: 0           # 1 if the device's documentation counts from 1
    word_order: big           # default for the device's 32/64-bit datapoints
    byte_order: big
    allow_raw_writes: false
    datapoints:
      - name: voltage_l1
        table: input          # holding | input | coil | discrete
        address: 0
        type: float32
        unit: V
        homeassistant: {device_class: voltage, state_class: measurement}
      - name: setpoint
        table: holding
        address: 100
        type: int16
        scale: 0.1            # value = raw * scale + offset
        offset: 0
        writable: true
        min: 5
        max: 60
      - name: mode
        table: holding
        address: 101
        type: uint16
        values: {0: "off", 1: heat, 2: cool}   # value map, both directions
        writable: true
      - name: alarm
        table: holding
        address: 102
        type: bool
        bit: 3                # a bit inside a register (0 = least significant)
      - name: serial_number
        table: holding
        address: 200
        type: string
        length: 8             # registers
  - id: plc
    tcp:
      host: 192.0.2.10
      port: 502
      framer: socket          # socket (Modbus TCP) | rtu (RTU over TCP)
    unit: 1
"""

DELETE = object()  # in a patch: remove the key


def base() -> dict[str, Any]:
    """A small valid config: a serial device with one datapoint, and a TCP device."""
    return {"devices": [
        {"id": "meter1", "serial": {"port": "/dev/ttyUSB0", "parity": "N"}, "unit": 1,
         "datapoints": [{"name": "v", "table": "holding", "address": 0, "type": "uint16"}]},
        {"id": "plc", "tcp": {"host": "192.0.2.10"}, "unit": 1},
    ]}


def patched(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is DELETE:
            target.pop(key, None)
        else:
            target[key] = value


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        validate_config(data, env)
    return info.value.problems


def assert_problem(data: dict[str, Any], path: str, fragment: str) -> None:
    found = problems(data)
    assert any(p == path and fragment in m for p, m in found), found


def write(tmp_path: Path, text: str, name: str = "bridge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- valid configs ----------------------------------------------------------------


def test_the_documented_example_is_valid(tmp_path):
    cfg = load_config(write(tmp_path, EXAMPLE), env={})
    assert cfg.mqtt.protocol == "5"
    assert cfg.mqtt.password is None
    assert [d.id for d in cfg.devices] == ["meter1", "plc"]
    meter, plc = cfg.devices
    assert meter.serial is not None and meter.serial.parity == "N"
    assert meter.datapoints[2].values == {0: "off", 1: "heat", 2: "cool"}
    ha = meter.datapoints[0].homeassistant
    assert ha is not None and (ha.device_class, ha.state_class) == ("voltage", "measurement")
    assert plc.tcp is not None and (plc.tcp.port, plc.tcp.framer) == (502, "socket")
    assert plc.datapoints == []
    assert [p.name for p in meter.points()] == [
        "voltage_l1", "setpoint", "mode", "alarm", "serial_number"]


def test_defaults():
    cfg = validate_config({"devices": [{"id": "d", "serial": {"port": "/dev/ttyS0"},
                                        "unit": 7}]})
    m = cfg.mqtt
    assert (m.host, m.port, m.username, m.password, m.client_id, m.base_topic) == (
        "localhost", 1883, None, None, "modbus-bridge", "modbus")
    assert (m.protocol, m.qos, m.keepalive, m.per_datapoint_topics, m.tls) == (
        "5", 1, 30, True, None)
    assert (m.reconnect_min, m.reconnect_max) == (1.0, 60.0)
    assert (cfg.homeassistant.discovery, cfg.homeassistant.prefix) == (False, "homeassistant")
    assert cfg.health_interval == 60
    assert (cfg.bus.queue_size, cfg.bus.command_deadline, cfg.bus.backoff_max) == (
        256, 10.0, 60.0)
    d = cfg.devices[0]
    assert (d.name, d.unit, d.timeout, d.retries, d.offline_after, d.poll_interval) == (
        None, 7, 0.5, 1, 3, 5.0)
    assert (d.address_base, d.word_order, d.byte_order, d.allow_raw_writes, d.max_gap) == (
        0, Order.BIG, Order.BIG, False, 8)
    assert d.serial is not None
    s = d.serial
    assert (s.baudrate, s.parity, s.stopbits, s.bytesize, s.frame_gap) == (9600, "E", 1, 8, None)


def test_zero_means_off_where_documented():
    data = base()
    data["health_interval"] = 0
    data["devices"][0]["poll_interval"] = 0
    cfg = validate_config(data)
    assert cfg.health_interval == 0
    assert cfg.devices[0].poll_interval == 0


@pytest.mark.parametrize(("given", "expected"), [
    (5, "5"), ("5", "5"), (5.0, "5"), ("v5", "5"),
    ("3.1.1", "3.1.1"), ("v3.1.1", "3.1.1"), ("MQTTv311", "3.1.1"), (311, "3.1.1"),
])
def test_protocol_is_normalised(given, expected):
    data = base() | {"mqtt": {"protocol": given}}
    assert validate_config(data).mqtt.protocol == expected


@pytest.mark.parametrize("given", ["3.1", 4, "six", True, None])
def test_protocol_must_be_5_or_311(given):
    assert_problem(base() | {"mqtt": {"protocol": given}}, "mqtt.protocol", "5 or 3.1.1")


# A self-signed certificate (no key needed): the config loads TLS files to check them.
CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUMrDEo5LINKqIezNNBuUkWwM0M04wCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOY29uZmlnLXRlc3QtY2EwIBcNMjYxMjAxMjI1NzE3WhgPMjEy
NjExMDcyMjU3MTdaMBkxFzAVBgNVBAMMDmNvbmZpZy10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEr1O5/IULri3zPXhiDKpu0ePinv+LpSXX3wHfPkCC
PdFWyX7ckuIP/3k8gjHZl9kU2H8MQbq8LP9jM3+RFWblFaNTMFEwHQYDVR0OBBYE
FK0NEwLwg4ez+i77LtvW/KD2MwqLMB8GA1UdIwQYMBaAFK0NEwLwg4ez+i77LtvW
/KD2MwqLMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgUcQ0fMha
L3ejpZlB04zlQdPn+8iDwTr4gsFWZ0nUddICIQDyZjN6rxwawg41J4pBAgFXQ9MM
TpyG7eGgi/HuaUSa/A==
-----END CERTIFICATE-----
"""


@pytest.fixture
def ca_file(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text(CA_PEM)
    return str(path)


def test_parity_is_case_insensitive_and_tls_section_parses(ca_file):
    data = base() | {"mqtt": {"tls": {"ca_file": ca_file, "insecure": True}}}
    data["devices"][0]["serial"]["parity"] = "e"
    cfg = validate_config(data)
    assert cfg.devices[0].serial is not None and cfg.devices[0].serial.parity == "E"
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.ca_file == ca_file
    assert cfg.mqtt.tls.insecure and cfg.mqtt.tls.cert_file is None


def test_config_is_frozen():
    cfg = validate_config(base())
    with pytest.raises(ValidationError):
        cfg.mqtt.host = "elsewhere"  # type: ignore[misc]


# -- rules, each at its exact path -------------------------------------------------

POINT = "devices[0].datapoints[0]"


@pytest.mark.parametrize(("patch", "field", "fragment"), [
    ({"name": "set"}, "name", "reserved"),
    ({"name": "availability"}, "name", "reserved"),
    ({"name": "last_seen"}, "name", "reserved"),
    ({"name": "bad-name"}, "name", "[A-Za-z0-9_]+"),
    ({"name": "a/b"}, "name", "[A-Za-z0-9_]+"),
    ({"name": DELETE}, "name", "required"),
    ({"table": "holdings"}, "table", "'holding'"),
    ({"type": "float128"}, "type", "'float32'"),
    ({"address": -1}, "address", "greater than or equal to 0"),
    ({"table": "coil", "type": "uint16"}, "type", "must be bool"),
    ({"table": "discrete", "type": "float32"}, "type", "must be bool"),
    ({"table": "coil", "type": "bool", "bit": 1}, "bit", "bits already"),
    ({"type": "uint16", "bit": 3}, "bit", "needs type bool"),
    ({"type": "bool", "bit": 16}, "bit", "less than or equal to 15"),
    ({"type": "string"}, "length", "required for string"),
    ({"type": "uint16", "length": 2}, "length", "only for string"),
    ({"type": "string", "length": 126}, "length", "less than or equal to 125"),
    ({"type": "int16", "word_order": "little"}, "word_order", "only for 32/64-bit"),
    ({"type": "bool", "word_order": "big"}, "word_order", "only for 32/64-bit"),
    ({"type": "string", "length": 2, "word_order": "little"}, "word_order", "32/64-bit"),
    ({"type": "float32", "word_order": "middle"}, "word_order", "'big', 'little' or 'pairs'"),
    ({"table": "coil", "type": "bool", "byte_order": "little"}, "byte_order", "no bytes"),
    ({"table": "input", "writable": True}, "writable", "read-only"),
    ({"table": "discrete", "type": "bool", "writable": True}, "writable", "read-only"),
    ({"min": 10, "max": 5}, "min", "must be <= max"),
    ({"type": "bool", "min": 0}, "min", "only for numeric"),
    ({"type": "string", "length": 2, "max": 3}, "max", "only for numeric"),
    ({"type": "float32", "values": {0: "off"}}, "values", "integer type"),
    ({"values": {70000: "x"}}, "values[70000]", "does not fit uint16"),
    ({"type": "int16", "values": {-40000: "x"}}, "values[-40000]", "does not fit int16"),
    ({"values": {0: "a", 1: "a"}}, "values[1]", "also used for 0"),
    ({"values": {0: False}}, "values[0]", "quote it"),
    ({"values": {"x": "a"}}, "values.x", "key: "),
    ({"scale": 0}, "scale", "must not be 0"),
    ({"type": "bool", "scale": 2}, "scale", "only for numeric"),
    ({"type": "bool", "offset": 1}, "offset", "only for numeric"),
    ({"address": 65535, "type": "uint32"}, "address", "span 65535..65536 does not fit 0..65535"),
    ({"address": 65535, "type": "string", "length": 2}, "address", "does not fit"),
    ({"homeassistant": {"device_class": "x", "colour": 1}}, "homeassistant.colour", "unknown"),
])
def test_datapoint_rules(patch, field, fragment):
    data = base()
    patched(data["devices"][0]["datapoints"][0], patch)
    assert_problem(data, f"{POINT}.{field}", fragment)


@pytest.mark.parametrize(("patch", "field", "fragment"), [
    ({"id": "meter 1"}, "id", "[A-Za-z0-9_-]+"),
    ({"id": "a/b"}, "id", "[A-Za-z0-9_-]+"),
    ({"id": "a+"}, "id", "[A-Za-z0-9_-]+"),
    ({"id": "bridge"}, "id", "reserved"),
    ({"unit": 0}, "unit", "must be 1..247 on a serial line or RTU over TCP (0 is broadcast)"),
    ({"unit": 248}, "unit", "must be 1..247 on a serial line"),
    ({"unit": 256}, "unit", "less than or equal to 255"),
    ({"unit": -1}, "unit", "greater than or equal to 0"),
    ({"tcp": {"host": "gw", "framer": "rtu"}, "serial": DELETE, "unit": 0}, "unit",
     "must be 1..247 on a serial line or RTU over TCP"),
    ({"unit": DELETE}, "unit", "required"),
    ({"timeout": 0}, "timeout", "greater than 0"),
    ({"timeout": -1}, "timeout", "greater than 0"),
    ({"retries": 6}, "retries", "less than or equal to 5"),
    ({"retries": -1}, "retries", "greater than or equal to 0"),
    ({"offline_after": 0}, "offline_after", "greater than or equal to 1"),
    ({"poll_interval": -1}, "poll_interval", "greater than or equal to 0"),
    ({"address_base": 2}, "address_base", "0 or 1"),
    ({"max_gap": 126}, "max_gap", "less than or equal to 125"),
    ({"word_order": "middle"}, "word_order", "'big', 'little' or 'pairs'"),
    ({"serial": DELETE}, "serial", "needs serial or tcp"),
    ({"tcp": {"host": "h"}}, "tcp", "not both"),
    ({"serial": {"port": "/dev/ttyUSB0", "parity": "X"}}, "serial.parity", "'N', 'E' or 'O'"),
    ({"serial": {"port": "/dev/ttyUSB0", "stopbits": 3}}, "serial.stopbits", "1 or 2"),
    ({"serial": {"port": "/dev/ttyUSB0", "bytesize": 6}}, "serial.bytesize", "7 or 8"),
    ({"serial": {"port": "/dev/ttyUSB0", "baudrate": 0}}, "serial.baudrate", "greater than 0"),
    ({"serial": {"port": ""}}, "serial.port", "at least 1 character"),
    ({"serial": {"port": "/dev/ttyUSB0", "frame_gap": -0.1}}, "serial.frame_gap",
     "greater than or equal to 0"),
    ({"datapoints": [{"name": "v", "table": "coil", "address": 0, "type": "bool"},
                     {"name": "v", "table": "coil", "address": 1, "type": "bool"}]},
     "datapoints[1].name", "duplicate datapoint name 'v' (also datapoints[0])"),
    ({"address_base": 1}, "datapoints[0].address", "below address_base 1"),
])
def test_device_rules(patch, field, fragment):
    data = base()
    patched(data["devices"][0], patch)
    assert_problem(data, f"devices[0].{field}", fragment)


@pytest.mark.parametrize(("patch", "field", "fragment"), [
    ({"host": "h", "framer": "ascii"}, "framer", "'socket' or 'rtu'"),
    ({"host": "h", "port": 0}, "port", "greater than or equal to 1"),
    ({"host": "h", "port": 65536}, "port", "less than or equal to 65535"),
    ({"port": 502}, "host", "required"),
])
def test_tcp_rules(patch, field, fragment):
    data = base()
    data["devices"][1]["tcp"] = patch
    assert_problem(data, f"devices[1].tcp.{field}", fragment)


@pytest.mark.parametrize(("section", "patch", "path", "fragment"), [
    ("mqtt", {"port": 0}, "mqtt.port", "greater than or equal to 1"),
    ("mqtt", {"port": 70000}, "mqtt.port", "less than or equal to 65535"),
    ("mqtt", {"qos": 3}, "mqtt.qos", "less than or equal to 2"),
    ("mqtt", {"keepalive": 0}, "mqtt.keepalive", "greater than or equal to 1"),
    ("mqtt", {"host": ""}, "mqtt.host", "at least 1 character"),
    ("mqtt", {"base_topic": "a/#"}, "mqtt.base_topic", "no '+' or '#'"),
    ("mqtt", {"base_topic": ""}, "mqtt.base_topic", "no empty level"),
    ("mqtt", {"base_topic": "a//b"}, "mqtt.base_topic", "no empty level"),
    ("mqtt", {"base_topic": "$SYS"}, "mqtt.base_topic", "not starting with '$'"),
    ("mqtt", {"password": 12345}, "mqtt.password", "quote it"),
    ("mqtt", {"reconnect_min": 10, "reconnect_max": 5}, "mqtt.reconnect_max", ">= reconnect_min"),
    ("mqtt", {"reconnect_min": 0}, "mqtt.reconnect_min", "greater than 0"),
    ("mqtt", {"tls": {"key_file": "k.pem"}}, "mqtt.tls.key_file", "needs cert_file"),
    ("mqtt", {"tls": {"cafile": "ca.pem"}}, "mqtt.tls.cafile", "did you mean 'ca_file'"),
    ("homeassistant", {"prefix": "ha/+"}, "homeassistant.prefix", "no '+' or '#'"),
    ("homeassistant", {"status_topic": "ha/#"}, "homeassistant.status_topic", "no '+' or '#'"),
    ("metrics", {"port": 0}, "metrics.port", "greater than or equal to 1"),
    ("metrics", {"host": ""}, "metrics.host", "at least 1 character"),
    ("bus", {"queue_size": 0}, "bus.queue_size", "greater than or equal to 1"),
    ("bus", {"command_deadline": 0}, "bus.command_deadline", "greater than 0"),
    ("bus", {"backoff_max": -1}, "bus.backoff_max", "greater than 0"),
])
def test_section_rules(section, patch, path, fragment):
    assert_problem(base() | {section: patch}, path, fragment)


def test_health_interval_is_not_negative():
    assert_problem(base() | {"health_interval": -1}, "health_interval", "greater than or equal")


def test_a_bridge_needs_a_device():
    assert_problem({"devices": []}, "devices", "at least one device is required")
    assert_problem({}, "devices", "required")


@pytest.mark.parametrize(("where", "key", "path", "fragment"), [
    ("root", "mqqt", "mqqt", "did you mean 'mqtt'"),
    ("root", "zzz", "zzz",
     "expected one of: mqtt, bridge, homeassistant, health_interval, metrics, bus,"),
    ("mqtt", "hostt", "mqtt.hostt", "did you mean 'host'"),
    ("device", "pol_interval", "devices[0].pol_interval", "did you mean 'poll_interval'"),
    ("serial", "baud", "devices[0].serial.baud", "did you mean 'baudrate'"),
    ("point", "sclae", f"{POINT}.sclae", "did you mean 'scale'"),
])
def test_unknown_keys_are_errors(where, key, path, fragment):
    data = base() | {"mqtt": {}}
    target = {"root": data, "mqtt": data["mqtt"], "device": data["devices"][0],
              "serial": data["devices"][0]["serial"],
              "point": data["devices"][0]["datapoints"][0]}[where]
    target[key] = 1
    found = problems(data)
    assert [p for p, _ in found] == [path]
    assert found[0][1].startswith(f"unknown key {key!r}") and fragment in found[0][1]


@pytest.mark.parametrize(("transport", "unit"), [
    ({"tcp": {"host": "192.0.2.10"}}, 0),
    ({"tcp": {"host": "192.0.2.10"}}, 255),
    ({"tcp": {"host": "192.0.2.10", "framer": "socket"}}, 248),
    ({"tcp": {"host": "192.0.2.10", "framer": "rtu"}}, 247),
    ({"serial": {"port": "/dev/ttyUSB0", "parity": "N"}}, 1),
    ({"serial": {"port": "/dev/ttyUSB0", "parity": "N"}}, 247),
])
def test_unit_ids_each_transport_accepts(transport, unit):
    data = {"devices": [{"id": "d", "unit": unit, **transport}]}
    assert validate_config(data).devices[0].unit == unit


@pytest.mark.parametrize(("instance", "fragment"), [
    ("hall 2", "[A-Za-z0-9_-]"), ("a/b", "[A-Za-z0-9_-]"), ("", "[A-Za-z0-9_-]"),
    ("x" * 65, "{1,64}"), ("info", "reserved"), ("state", "reserved"),
])
def test_bridge_instance_rules(instance, fragment):
    data = base()
    data["bridge"] = {"instance": instance}
    assert_problem(data, "bridge.instance", fragment)


def test_bridge_instance_defaults_to_main():
    assert validate_config(base()).bridge.instance is None
    assert validate_config(base()).bridge.instance_id == "main"
    named = validate_config({**base(), "bridge": {"instance": "hall-2"}})
    assert named.bridge.instance_id == "hall-2"
    env = validate_config(base(), env={"BRIDGE_BRIDGE__INSTANCE": "barn"})
    assert env.bridge.instance_id == "barn"


def test_every_problem_is_reported_at_once():
    data = base()
    data["mqtt"] = {"qos": 5}
    data["devices"][0]["datapoints"].append(
        {"name": "v", "table": "coil", "address": 0, "type": "uint16"})
    data["devices"][1]["unit"] = 300
    data["devices"].append({"id": "plc", "tcp": {"host": "192.0.2.11"}, "unit": 2,
                            "datapoints": [{"name": "x", "table": "input", "address": 0,
                                            "type": "int16", "writable": True}]})
    paths = [p for p, _ in problems(data)]
    assert sorted(paths) == sorted([
        "mqtt.qos",
        "devices[0].datapoints[1].type",   # coil must be bool ...
        "devices[1].unit",
        "devices[2].datapoints[0].writable",
        "devices[2].id",                   # ... and the duplicate id is still found
    ])


def test_error_message_lists_path_and_expectation():
    data = base()
    data["devices"][0]["datapoints"][0]["type"] = "float128"
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    assert "devices[0].datapoints[0].type: Input should be 'int16'" in str(info.value)


# -- devices sharing a port --------------------------------------------------------


def serial_device(dev_id: str, port: str, **line: Any) -> dict[str, Any]:
    return {"id": dev_id, "serial": {"port": port, "parity": "N", **line}, "unit": 1}


@pytest.mark.parametrize(("setting", "first", "second"), [
    ("baudrate", 9600, 19200),
    ("parity", "N", "E"),
    ("stopbits", 1, 2),
    ("bytesize", 8, 7),
    ("frame_gap", None, 0.01),
])
def test_devices_on_one_port_agree_on_its_settings(setting, first, second):
    data = {"devices": [serial_device("a", "/dev/ttyUSB0", **{setting: first}),
                        serial_device("b", "/dev/ttyUSB1", **{setting: first}),
                        serial_device("c", "/dev/ttyUSB0", **{setting: second})]}
    found = problems(data)
    assert len(found) == 1
    path, message = found[0]
    assert path == f"devices[2].serial.{setting}"
    assert "'a' and 'c'" in message and "/dev/ttyUSB0" in message
    assert f"disagree on {setting}: {first!r} vs {second!r}" in message


def test_a_link_and_its_target_are_one_port(tmp_path):
    target = tmp_path / "ttyUSB0"
    target.touch()
    link = tmp_path / "usb-FTDI_FT232R-if00-port0"
    link.symlink_to(target)
    ok = validate_config({"devices": [serial_device("a", str(target)),
                                      serial_device("b", str(link))]})
    assert len({d.port_key for d in ok.devices}) == 1
    assert ok.devices[1].port_key == str(target.resolve())
    found = problems({"devices": [serial_device("a", str(target)),
                                  serial_device("b", str(link), baudrate=19200)]})
    assert [p for p, _ in found] == ["devices[1].serial.baudrate"]
    assert "'a' and 'b'" in found[0][1]


def test_distinct_ports_may_differ():
    cfg = validate_config({"devices": [serial_device("a", "/dev/ttyUSB0"),
                                       serial_device("b", "/dev/ttyUSB1", baudrate=19200),
                                       serial_device("c", "socket://127.0.0.1:5020")]})
    assert len({d.port_key for d in cfg.devices}) == 3
    assert cfg.devices[2].port_key == "socket://127.0.0.1:5020"  # URLs as given


def test_tcp_endpoint_devices_agree_on_framer():
    def tcp(dev_id: str, port: int, framer: str) -> dict[str, Any]:
        return {"id": dev_id, "tcp": {"host": "gw", "port": port, "framer": framer}, "unit": 2}
    ok = validate_config({"devices": [tcp("a", 502, "rtu"), tcp("b", 502, "rtu"),
                                      tcp("c", 503, "socket")]})
    assert ok.devices[0].port_key == ok.devices[1].port_key == "gw:502"
    found = problems({"devices": [tcp("a", 502, "rtu"), tcp("b", 502, "socket")]})
    assert [p for p, _ in found] == ["devices[1].tcp.framer"]
    assert "'rtu' vs 'socket'" in found[0][1]


def test_duplicate_device_ids():
    data = base()
    data["devices"][1]["id"] = "meter1"
    assert_problem(data, "devices[1].id", "duplicate device id 'meter1' (also devices[0])")


# -- the environment over the file --------------------------------------------------

SECRET = "s3cr3t-Pa55w0rd"


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, EXAMPLE.replace("host: localhost", "host: file-host"))
    cfg = load_config(path, env={"BRIDGE_MQTT__HOST": "broker", "BRIDGE_MQTT__PORT": "8883",
                                 "BRIDGE_MQTT__PASSWORD": SECRET, "BRIDGE_HEALTH_INTERVAL": "0",
                                 "UNRELATED": "x"})
    assert (cfg.mqtt.host, cfg.mqtt.port) == ("broker", 8883)
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == SECRET
    assert cfg.mqtt.client_id == "modbus-bridge"  # the rest of the section is the file's
    assert cfg.health_interval == 0
    assert len(cfg.devices) == 2


def test_environment_names_are_case_insensitive_and_reach_nested_sections(ca_file):
    cfg = validate_config(base(), env={"bridge_mqtt__host": "broker",
                                       "BRIDGE_MQTT__TLS__CA_FILE": ca_file})
    assert cfg.mqtt.host == "broker"
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.ca_file == ca_file


def test_the_password_never_shows():
    data = base() | {"mqtt": {"username": "bridge"}}
    cfg = validate_config(data, env={"BRIDGE_MQTT__PASSWORD": SECRET})
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == SECRET
    redacted = cfg.redacted_dict()
    assert redacted["mqtt"]["password"] == "**********"
    assert redacted["mqtt"]["username"] == "bridge"
    for text in (repr(cfg), str(cfg), repr(cfg.mqtt), json.dumps(redacted),
                 cfg.model_dump_json()):
        assert SECRET not in text
    bad = copy.deepcopy(data)
    bad["mqtt"]["port"] = "x"
    with pytest.raises(ConfigError) as info:
        validate_config(bad, env={"BRIDGE_MQTT__PASSWORD": SECRET})
    assert SECRET not in str(info.value)


def test_a_bad_environment_value_names_the_variable():
    found = problems(base(), env={"BRIDGE_MQTT__PORT": "eighty", "BRIDGE_MQTT__HOSTT": "x"})
    assert dict(found)["mqtt.port"].endswith("(from environment variable BRIDGE_MQTT__PORT)")
    assert "unknown key 'hostt'" in dict(found)["mqtt.hostt"]


def test_a_section_from_the_environment_must_be_json():
    found = problems(base(), env={"BRIDGE_BUS": "{queue_size: 3"})
    assert found[0][0] == "bus" and "BRIDGE_BUS must be JSON" in found[0][1]
    cfg = validate_config(base(), env={"BRIDGE_BUS": '{"queue_size": 3}'})
    assert cfg.bus.queue_size == 3


def test_validate_config_ignores_the_process_environment(monkeypatch):
    monkeypatch.setenv("BRIDGE_MQTT__HOST", "from-process")
    assert validate_config(base()).mqtt.host == "localhost"


def test_load_config_reads_the_process_environment_by_default(tmp_path, monkeypatch):
    # env=None means os.environ: the one test that has to touch it (monkeypatch restores it).
    monkeypatch.setenv("BRIDGE_MQTT__HOST", "from-process")
    monkeypatch.setenv("BRIDGE_CONFIG", str(write(tmp_path, EXAMPLE, "elsewhere.yaml")))
    assert load_config().mqtt.host == "from-process"


def test_the_file_path_comes_from_bridge_config_then_the_working_directory(tmp_path,
                                                                          monkeypatch):
    other = write(tmp_path, EXAMPLE.replace("client_id: modbus-bridge", "client_id: other"),
                  "other.yaml")
    assert load_config(env={"BRIDGE_CONFIG": str(other)}).mqtt.client_id == "other"
    monkeypatch.chdir(tmp_path)
    write(tmp_path, EXAMPLE)
    assert load_config(env={}).mqtt.client_id == "modbus-bridge"


# -- the file itself --------------------------------------------------------------


@pytest.mark.parametrize(("text", "fragment"), [
    ("mqtt:\n  host: a\n   port: 1\n", ":3:8: invalid YAML: mapping values are not allowed"),
    ("devices:\n  - id: a\n    unit: [1\n", ":4:1: invalid YAML: expected ',' or ']'"),
    ("mqtt:\n  host: a\n  host: b\n", ":3:3: invalid YAML: duplicate key 'host' (first on line 2)"),
    ("- mqtt\n- devices\n", "the top level must be a mapping of sections"),
    ("just text\n", "the top level must be a mapping of sections"),
])
def test_file_level_errors(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    [(where, message)] = info.value.problems
    assert where == ""
    assert message.startswith(str(path)) and fragment in message


def test_missing_unreadable_and_binary_files(tmp_path):
    for path, fragment in [(tmp_path / "nope.yaml", "not found"),
                           (tmp_path, "cannot read config file"),
                           (tmp_path / "bin.yaml", "not UTF-8")]:
        if path.name == "bin.yaml":
            path.write_bytes(b"mqtt: \xff\xfe\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        assert fragment in info.value.problems[0][1] and str(path) in info.value.problems[0][1]


def test_an_empty_file_is_a_config_without_devices(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "# nothing yet\n"), env={})
    assert info.value.problems == [("devices", "required")]


def test_yaml_anchors_and_merge_keys_work(tmp_path):
    text = """
devices:
  - {id: a, unit: 1, serial: &line {port: /dev/ttyUSB0, parity: N, baudrate: 19200}}
  - {id: b, unit: 2, serial: *line}
  - {id: c, unit: 3, serial: {<<: *line, port: /dev/ttyUSB1}}
"""
    cfg = load_config(write(tmp_path, text), env={})
    assert [d.serial.baudrate for d in cfg.devices if d.serial] == [19200] * 3
    assert len({d.port_key for d in cfg.devices}) == 2


def test_validate_config_wants_a_mapping():
    with pytest.raises(ConfigError, match="must be a mapping"):
        validate_config([1, 2])  # type: ignore[arg-type]


# -- conversion to the vocabulary ---------------------------------------------------


def test_address_base_one_gives_protocol_addresses():
    data = base()
    device = data["devices"][0]
    device["address_base"] = 1
    device["datapoints"] = [
        {"name": "first", "table": "holding", "address": 1, "type": "uint16"},
        {"name": "last", "table": "input", "address": 65536, "type": "int16"},
        {"name": "relay", "table": "coil", "address": 10, "type": "bool"},
    ]
    points = validate_config(data).devices[0].points()
    assert [(p.name, p.address) for p in points] == [("first", 0), ("last", 65535),
                                                       ("relay", 9)]
    device["datapoints"][1]["type"] = "int32"  # 65536..65537 under base 1: one too far
    assert_problem(data, "devices[0].datapoints[1].address",
                   "span 65536..65537 does not fit 1..65536")


def test_points_take_the_device_orders_unless_they_set_their_own():
    data = base()
    device = data["devices"][0]
    device |= {"word_order": "little", "byte_order": "little"}
    device["datapoints"] = [
        {"name": "plain", "table": "input", "address": 0, "type": "float32"},
        {"name": "words", "table": "input", "address": 2, "type": "uint32",
         "word_order": "big"},
        {"name": "bytes", "table": "input", "address": 4, "type": "float64",
         "byte_order": "big"},
        {"name": "short", "table": "input", "address": 8, "type": "int16"},
    ]
    orders = {p.name: (p.word_order, p.byte_order) for p in validate_config(data).devices[0]
              .points()}
    assert orders == {"plain": (Order.LITTLE, Order.LITTLE), "words": (Order.BIG, Order.LITTLE),
                      "bytes": (Order.LITTLE, Order.BIG), "short": (Order.LITTLE, Order.LITTLE)}


def test_points_carry_every_setting():
    data = base()
    data["devices"][0]["datapoints"] = [
        {"name": "mode", "table": "holding", "address": 5, "type": "int16", "scale": 0.5,
         "offset": -1, "writable": True, "min": -10, "max": 10, "unit": "°C",
         "values": {"0": "off", "1": "on", -1: "error"}},
        {"name": "sn", "table": "input", "address": 6, "type": "string", "length": 4},
        {"name": "flag", "table": "holding", "address": 7, "type": "bool", "bit": 15},
    ]
    mode, sn, flag = validate_config(data).devices[0].points()
    assert (mode.table, mode.type, mode.scale, mode.offset) == (
        Table.HOLDING, DataType.INT16, 0.5, -1)
    assert (mode.writable, mode.min, mode.max, mode.unit) == (True, -10, 10, "°C")
    assert mode.values == {0: "off", 1: "on", -1: "error"}
    assert (sn.type, sn.length, sn.count) == (DataType.STRING, 4, 4)
    assert (flag.bit, flag.count) == (15, 1)


# -- the schema ---------------------------------------------------------------------


def test_json_schema_describes_the_file():
    schema = config_json_schema()
    json.dumps(schema)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"mqtt", "bridge", "homeassistant", "health_interval", "metrics", "bus",
            "devices"} == set(
        schema["properties"])
    assert schema["required"] == ["devices"]
    defs = schema["$defs"]
    assert all(d.get("additionalProperties") is False for d in defs.values()
               if d.get("type") == "object" and "properties" in d)
    assert defs["MqttSettings"]["properties"]["protocol"]["enum"] == [5, "5", "3.1.1"]
    assert "0: no polling" in defs["DeviceSettings"]["properties"]["poll_interval"]["description"]
    assert set(defs["DatapointSettings"]["properties"]["table"]["$ref"].split("/")[-1:]) == {
        "Table"}


def test_the_schema_accepts_what_the_example_uses():
    example = yaml.safe_load(EXAMPLE)
    props = config_json_schema()["$defs"]["DeviceSettings"]["properties"]
    assert set(example["devices"][0]) <= set(props)
    assert isinstance(Config.model_json_schema(), dict)
