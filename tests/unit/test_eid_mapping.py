"""The EID mapping on hand-made EIDs: each kind of defect found in published EIDs is
skipped with its reason (never a crash), bitOrder and direction tables, placeholders,
and the config's `eid:` block with its errors at devices[i].eid..."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.config import validate_config
from bridge.config.eid import BASE_DIR
from bridge.core.errors import ConfigError
from bridge.sgr.connection import resolve
from bridge.sgr.eid import Eid, EidPoint, Interface
from bridge.sgr.mapping import EidProblems, Options, fold, map_eid

EIDS = Path(__file__).parent.parent / "data" / "eids"
STIEBEL = str(EIDS / "SGr_04_0015_xxxx_StiebelEltron_HeatPump_V1.0.0.xml")
ABB_RTU = str(EIDS / "SGr_00_0016_dddd_ABB_B23_ModbusRTU_V0.3.xml")

P = EidPoint(profile="Prof", name="Pt", direction="R", modbus_type="int16",
             register_type="HoldRegister", address=10, registers=1)
TCP = Interface(selection="TCPIP", slave_id="{{slave_id}}", tcp_port="{{tcp_port}}",
                tcp_address="{{tcp_address}}")
CONFIG = {"slave_id": "1", "tcp_port": "502", "tcp_address": "0.0.0.0"}


def eid(*points: EidPoint, **interface: Any) -> Eid:
    return Eid(device_name="d", manufacturer="m", interface=replace(TCP, **interface),
               configuration=dict(CONFIG), points=points)


def one(p: EidPoint, **interface: Any) -> dict[str, Any] | str:
    result = map_eid(eid(p, **interface), Options())
    return result.points[0] if result.points else result.skipped[0][1]


# -- defects of published EIDs: skipped with the reason -------------------------------

@pytest.mark.parametrize(("point", "interface", "reason"), [
    (replace(P, address=0), {"first_register_is_one": True},
     "address 0 (counted from 1) gives -1..-1, outside 0..65535"),
    (replace(P, modbus_type="float64", registers=2), {},
     "numberOfRegisters 2 does not fit float64 (4 registers)"),
    (replace(P, name=""), {}, "empty data point name"),
    (replace(P, address=65535, modbus_type="int32", registers=2), {},
     "address 65535 gives 65535..65536, outside 0..65535"),
    (replace(P, modbus_type="dateTime", registers=4), {}, "dateTime is not supported"),
    (replace(P, sunssf=-2), {}, "sunssf (a SunSpec scale factor register) is not supported"),
    (replace(P, register_type=None), {}, "no registerType or address"),
    (replace(P, layer6="2RegBase1000_L2H", modbus_type="int16U", registers=3), {},
     "numberOfRegisters 3 does not fit int16U (2 registers)"),
    (replace(P, direction="W", register_type="InputRegister"), {},
     "write-only but in a read-only InputRegister"),
])
def test_defects_are_skipped_with_the_reason(point: EidPoint, interface: dict[str, Any],
                                             reason: str) -> None:
    assert one(point, **interface) == reason


def test_a_skipped_point_does_not_stop_the_rest() -> None:
    result = map_eid(eid(replace(P, name=""), replace(P, name="ok", address=0)), Options())
    assert [p["name"] for p in result.points] == ["Prof_ok"]
    assert result.skipped == [("Prof/", "empty data point name")]


def test_duplicated_enum_literal_gets_the_ordinal_suffix() -> None:
    got = one(replace(P, modbus_type="int16U", generic_type="enum",
                      enum=((0, "OFF"), (1, "ON"), (2, "ON"), (3, "OFF"))))
    assert isinstance(got, dict)
    assert got["values"] == {0: "OFF", 1: "ON", 2: "ON_2", 3: "OFF_3"}


def test_enum_with_hex_mask() -> None:
    got = one(replace(P, modbus_type="enum", registers=1, enum=((1, "A"), (2, "B")),
                      enum_mask=0x0F))
    assert isinstance(got, dict)
    assert (got["type"], got["mask"], got["values"]) == ("uint16", 0x0F, {1: "A", 2: "B"})


# -- bitOrder and types -----------------------------------------------------------------

@pytest.mark.parametrize(("bit_order", "modbus_type", "registers", "orders"), [
    ("BigEndian", "int32", 2, ("big", "big")),
    ("ChangeByteOrder", "int32", 2, ("big", "little")),
    ("ChangeWordOrder", "float32", 2, ("pairs", "big")),   # = little for 32 bits
    ("ChangeWordOrder", "int64", 4, ("pairs", "big")),     # CD AB GH EF
    ("ChangeByteOrder", "int16", 1, (None, "little")),
])
def test_bit_order(bit_order: str, modbus_type: str, registers: int,
                   orders: tuple[str | None, str]) -> None:
    got = one(replace(P, modbus_type=modbus_type, registers=registers), bit_order=bit_order)
    assert isinstance(got, dict)
    assert (got.get("word_order"), got["byte_order"]) == orders


@pytest.mark.parametrize("bit_order", ["ChangeDWordOrder", "ChangeBitOrder"])
def test_unsupported_bit_order_is_refused_unless_overridden(bit_order: str) -> None:
    with pytest.raises(EidProblems, match="word_order and byte_order"):
        map_eid(eid(P, bit_order=bit_order), Options())
    result = map_eid(eid(P, bit_order=bit_order), Options(orders=(None, "little")))
    assert result.points[0]["byte_order"] == "little"


def test_explicit_orders_override_one_at_a_time() -> None:
    p64 = replace(P, modbus_type="int64", registers=4)
    result = map_eid(eid(p64, bit_order="ChangeWordOrder"), Options(orders=(None, "little")))
    assert (result.points[0]["word_order"], result.points[0]["byte_order"]) == (
        "pairs", "little")


@pytest.mark.parametrize(("modbus_type", "type_"), [
    ("int8", "int8"), ("int8U", "uint8"), ("int16U", "uint16"), ("int32U", "uint32"),
    ("int64U", "uint64"), ("float32", "float32"), ("float64", "float64")])
def test_types(modbus_type: str, type_: str) -> None:
    words = {"int32U": 2, "int64U": 4, "float32": 2, "float64": 4}.get(modbus_type, 1)
    got = one(replace(P, modbus_type=modbus_type, registers=words))
    assert isinstance(got, dict) and got["type"] == type_


def test_scale_is_scaling_factor_times_unit_conversion() -> None:
    got = one(replace(P, multiplicator=5, power_of_10=-2, unit_multiplier=0.001,
                      unit="KILOWATTS", minimum=-1.5, maximum=2.5))
    assert isinstance(got, dict)
    assert (got["scale"], got["unit"], got["min"], got["max"]) == (5e-05, "kW", -1.5, 2.5)


@pytest.mark.parametrize(("direction", "register_type", "fields"), [
    ("R", "HoldRegister", {}),
    ("C", "HoldRegister", {"constant": True}),
    ("W", "HoldRegister", {"writable": True, "read": False}),
    ("RW", "HoldRegister", {"writable": True}),
    ("RWP", "HoldRegister", {"writable": True, "persistent": True}),
    ("RW", "InputRegister", {}),   # an input register cannot be written: read-only
])
def test_direction(direction: str, register_type: str, fields: dict[str, Any]) -> None:
    got = one(replace(P, direction=direction, register_type=register_type))
    assert isinstance(got, dict)
    assert {k: got[k] for k in ("writable", "read", "constant", "persistent")
            if k in got} == fields


def test_boolean_register_with_values_and_coils() -> None:
    got = one(replace(P, modbus_type="boolean", true_value=0xFF, false_value=0x55))
    assert isinstance(got, dict)
    assert (got["type"], got["true_value"], got["false_value"]) == ("bool", 0xFF, 0x55)
    coil = one(replace(P, modbus_type="boolean", register_type="Coil"))
    assert isinstance(coil, dict) and (coil["table"], coil["type"]) == ("coil", "bool")


def test_array_length_expands() -> None:
    result = map_eid(eid(replace(P, modbus_type="int32", registers=2, array_length=3)),
                     Options())
    assert [(p["name"], p["address"]) for p in result.points] == [
        ("Prof_Pt_0", 10), ("Prof_Pt_1", 12), ("Prof_Pt_2", 14)]


def test_names_fold_and_clashes_get_a_suffix() -> None:
    assert fold("Wärme-Pumpe 1/ä") == "Warme_Pumpe_1_a"
    result = map_eid(eid(replace(P, name="a-b"), replace(P, name="a_b", address=11)),
                     Options())
    assert [p["name"] for p in result.points] == ["Prof_a_b", "Prof_a_b_2"]


# -- placeholders and connection settings -------------------------------------------

def test_placeholders_resolve_from_properties_else_defaults() -> None:
    conn = resolve(eid(P), {"slave_id": "7"})
    assert conn.unit is not None and (conn.unit.value, conn.unit.fixed) == (7, False)
    assert conn.tcp_port is not None and conn.tcp_port.value == 502
    rtu = Interface(selection="RTU", slave_id="1", baudrate="{{baud}}", parity="EVEN",
                    stopbits="1", bytesize="8")
    conn = resolve(Eid("d", None, rtu, {"baud": "19200"}), {})
    assert {k: (s.value, s.fixed) for k, s in conn.serial.items()} == {
        "baudrate": (19200, False), "parity": ("E", True), "stopbits": (1, True),
        "bytesize": (8, True)}


def test_unknown_property_is_an_error() -> None:
    with pytest.raises(EidProblems) as info:
        map_eid(eid(P), Options(properties={"slaveid": "3"}))
    assert info.value.problems[0][0] == ("properties", "slaveid")


# -- the config's eid block ------------------------------------------------------------

def device(**eid_block: Any) -> dict[str, Any]:
    return {"devices": [{"id": "hp", "tcp": {"host": "127.0.0.1"}, "eid": eid_block}]}


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return dict(info.value.problems)


def test_eid_device_gets_points_unit_and_port() -> None:
    config = validate_config(device(file=STIEBEL, properties={"slave_id": 3}))
    dev = config.devices[0]
    assert (dev.unit, dev.tcp is not None and dev.tcp.port, len(dev.points())) == (3, 502, 42)
    assert dev.eid is not None and dev.eid.skipped == []
    assert dev.eid.refs["HeatPumpBase_OutsideAirTemp"] == "HeatPumpBase/OutsideAirTemp"
    assert (dev.manufacturer, dev.model) == ("Stiebel-Eltron", "Internet Service Gateway ISG")


def test_own_datapoints_override_by_name_and_add() -> None:
    data = device(file=STIEBEL)
    data["devices"][0]["address_base"] = 1
    data["devices"][0]["datapoints"] = [
        {"name": "HeatPumpBase_OutsideAirTemp", "table": "input", "address": 507,
         "type": "int16", "scale": 0.5},
        {"name": "extra", "table": "holding", "address": 1, "type": "uint16"}]
    points = {p.name: p for p in validate_config(data).devices[0].points()}
    assert points["HeatPumpBase_OutsideAirTemp"].scale == 0.5
    assert points["extra"].address == 0
    # the EID's own points keep their protocol address under address_base 1
    assert points["HeatPumpBase_SourceTemp"].address == 535


def test_relative_file_is_read_from_the_config_folder() -> None:
    token = BASE_DIR.set(str(EIDS))
    try:
        config = validate_config(device(file=Path(STIEBEL).name))
    finally:
        BASE_DIR.reset(token)
    assert len(config.devices[0].points()) == 42


@pytest.mark.parametrize(("block", "where", "message"), [
    ({"file": "nope.xml"}, "devices[0].eid.file", "not found"),
    ({"file": STIEBEL, "properties": {"slaveid": 1}}, "devices[0].eid.properties.slaveid",
     "no property 'slaveid'"),
    ({"file": STIEBEL, "profiles": ["Nope"]}, "devices[0].eid.profiles[0]",
     "no functional profile 'Nope'"),
    ({"file": STIEBEL, "exclude": ["HeatPumpBase/Nope"]}, "devices[0].eid.exclude[0]",
     "no data point 'HeatPumpBase/Nope'"),
    ({"file": STIEBEL, "rename": {"HeatPumpBase/SourceTemp": "bad name"}},
     "devices[0].eid.rename.HeatPumpBase/SourceTemp", "must match"),
    ({"file": STIEBEL, "properties": {"slave_id": 0}}, "devices[0].unit",
     "0, broadcast"),
    ({"file": STIEBEL, "wrtes": False}, "devices[0].eid.wrtes", "unknown key"),
])
def test_eid_errors_name_the_field(block: dict[str, Any], where: str, message: str) -> None:
    found = problems(device(**block))
    assert where in found, found
    assert message in found[where]


def test_slave_id_0_is_fine_when_the_config_gives_the_unit() -> None:
    data = device(file=STIEBEL, properties={"slave_id": 0})
    data["devices"][0]["unit"] = 4
    assert validate_config(data).devices[0].unit == 4


def test_serial_settings_from_the_eid_and_explicit_values_win() -> None:
    data = {"devices": [{"id": "m", "serial": {"port": "/dev/null", "parity": "E"},
                         "eid": {"file": ABB_RTU}}]}
    dev = validate_config(data).devices[0]
    assert dev.serial is not None
    assert (dev.serial.baudrate, dev.serial.parity, dev.unit) == (19200, "E", 1)


def test_two_eids_on_one_line_must_agree() -> None:
    wago = str(EIDS / "SGr_04_0014_0000_WAGO_SmartMeterV0.2.1-Blocktransfer.xml")
    abb_eid = {"file": ABB_RTU, "properties": {"serial_baudrate": 9600}}
    data = {"devices": [
        {"id": "abb", "serial": {"port": "/dev/ttyX", "parity": "E"}, "eid": abb_eid},
        {"id": "wago", "serial": {"port": "/dev/ttyX"}, "unit": 2, "eid": {"file": wago}}]}
    found = problems(data)
    assert "devices[1].serial.baudrate" in found
    assert "'abb' and 'wago'" in found["devices[1].serial.baudrate"]


# -- the SGr handler's defects, through the whole EID path -----------------------------
# Each row: an EID data point, mapped and validated as the config does, then decoded /
# encoded by the codec. The SGr handler got each of these wrong.

def through_config(p: EidPoint, **interface: Any) -> Any:
    from bridge.config.models import DatapointSettings
    from bridge.core.points import Order
    settings = DatapointSettings.model_validate(one(p, **interface))
    class Device:  # what to_point reads of the device
        address_base, word_order, byte_order = 0, Order.BIG, Order.BIG
        no_value = ()
    return settings.to_point(Device)  # type: ignore[arg-type]


@pytest.mark.parametrize(("point", "interface", "words", "value"), [
    # ChangeWordOrder float32: the low word comes first (230.5 = 0x4366 0x8000)
    (replace(P, modbus_type="float32", registers=2), {"bit_order": "ChangeWordOrder"},
     [0x8000, 0x4366], 230.5),
    # int8: the low byte only, sign-extended; the high byte is not part of the value
    (replace(P, modbus_type="int8"), {}, [0x12FE], -2),
    (replace(P, modbus_type="int8U"), {}, [0x12FE], 254),
    # NUL-padded strings end at the padding
    (replace(P, modbus_type="string", registers=3), {}, [0x4142, 0x4300, 0x0000], "ABC"),
    # address 0 is a valid address when the EID counts from 0
    (replace(P, address=0, modbus_type="int16U"), {}, [7], 7),
    # enum ordinal 0 is a literal, not "no value"
    (replace(P, modbus_type="int16U", generic_type="enum", enum=((0, "OFF"), (1, "ON"))),
     {}, [0], "OFF"),
])
def test_sgr_handler_defects_decode(point: EidPoint, interface: dict[str, Any],
                                    words: list[int], value: object) -> None:
    from bridge.core.codec import decode
    dp = through_config(point, **interface)
    assert dp.address == point.address
    assert decode(dp, words) == value


@pytest.mark.parametrize(("point", "value", "words"), [
    # a scaled integer write rounds half up in decimal (21.45 / 0.1 = 215, not 214)
    (replace(P, direction="RW", multiplicator=1, power_of_10=-1), 21.45, [215]),
    (replace(P, direction="RW", multiplicator=1, power_of_10=-1), -0.06, [0xFFFF]),
    (replace(P, direction="RW", modbus_type="int16U", generic_type="enum",
             enum=((0, "OFF"), (1, "ON"))), "OFF", [0]),
    (replace(P, direction="RW", modbus_type="int8"), -2, [0x00FE]),
])
def test_sgr_handler_defects_encode(point: EidPoint, value: object, words: list[int]) -> None:
    from bridge.core.codec import encode
    assert encode(through_config(point), value) == words


def test_home_assistant_discovery_of_an_eid_device() -> None:
    """The EID's units and directions reach Home Assistant's entity kinds and classes."""
    from collections import Counter

    from bridge.features.homeassistant import Discovery
    from bridge.mqtt.topics import Topics
    config = validate_config({"homeassistant": {"discovery": True},
                              "devices": [{"id": "hp", "tcp": {"host": "127.0.0.1"},
                                           "eid": {"file": STIEBEL}}]})
    entities = {e.topic.split("/")[3]: e for e in Discovery(config, Topics("modbus")).entities()
                if "/main_hp/" in e.topic}
    assert Counter(e.topic.split("/")[1] for e in entities.values()) == {
        "sensor": 20, "binary_sensor": 13, "number": 6, "select": 2, "switch": 1}
    energy = entities["EnergyMonitor_ActiveEnergyACheat"].config
    assert (energy["unit_of_measurement"], energy["device_class"], energy["state_class"]) == (
        "kWh", "energy", "total_increasing")
    setpoint = entities["HeatCoolCtrl_1_SupplyWaterTempSetpointComfort"].config
    assert (setpoint["min"], setpoint["max"], setpoint["step"]) == (5, 30, 0.1)
