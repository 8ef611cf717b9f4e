"""The mapping on every sample EID (tests/data/eids): counts, names, addresses,
types, orders, scale, units, direction, limits and value maps, checked against
the XML by hand (addresses here are protocol addresses, from 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.config.models import DatapointSettings
from bridge.sgr.mapping import Mapped, Options, map_eid
from bridge.sgr.parse import read_eid

EIDS = Path(__file__).parent.parent / "data" / "eids"
ABB_RTU = "SGr_00_0016_dddd_ABB_B23_ModbusRTU_V0.3.xml"
ABB_TCP = "SGr_00_0016_dddd_ABB_B23_ModbusTCP_V0.4.xml"
WAGO = "SGr_04_0014_0000_WAGO_SmartMeterV0.2.3.xml"
WAGO_BLOCK = "SGr_04_0014_0000_WAGO_SmartMeterV0.2.1-Blocktransfer.xml"
STIEBEL = "SGr_04_0015_xxxx_StiebelEltron_HeatPump_V1.0.0.xml"
V = {"device_class": "voltage", "state_class": "measurement"}
KWH = {"device_class": "energy", "state_class": "total_increasing"}
C = {"device_class": "temperature", "state_class": "measurement"}


def mapped(name: str, **options: Any) -> Mapped:
    return map_eid(read_eid(EIDS / name), Options(**options))


def point(result: Mapped, name: str) -> dict[str, Any]:
    return next(p for p in result.points if p["name"] == name)


# (file, datapoints, EID data points skipped with their reasons)
COUNTS = [
    (ABB_RTU, 41, []),
    (ABB_TCP, 47, []),
    (WAGO, 47, []),
    (WAGO_BLOCK, 46, [("PowerFactor/PowerFactorL2",
                       "address 205226 gives 205226..205227, outside 0..65535")]),
    # 30 data points, and 12 flags of the HPOpStateAsBitmap bitmap
    (STIEBEL, 42, []),
]


@pytest.mark.parametrize(("name", "count", "skipped"), COUNTS)
def test_every_sample_loads(name: str, count: int, skipped: list[tuple[str, str]]) -> None:
    result = mapped(name)
    assert len(result.points) == count
    assert result.skipped == skipped
    names = [p["name"] for p in result.points]
    assert len(set(names)) == len(names)
    for p in result.points:  # each one is a valid datapoint as the config sees it
        DatapointSettings.model_validate(p)


# (file, datapoint, the fields expected; absent keys are defaults)
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    (ABB_RTU, "VoltageAC_VoltageACL1_N", {
        "table": "holding", "address": 23296, "type": "uint32", "word_order": "big",
        "byte_order": "big", "scale": 0.1, "unit": "V", "homeassistant": V,
        "min": 0.0, "max": 250.0}),
    (ABB_RTU, "Frequency_Frequency", {
        "table": "holding", "address": 23340, "type": "uint16", "byte_order": "big",
        "scale": 0.01, "unit": "Hz",
        "homeassistant": {"device_class": "frequency", "state_class": "measurement"}}),
    (ABB_RTU, "ActivePowerAC_ActivePowerACtot", {
        "table": "holding", "address": 23316, "type": "int32", "word_order": "big",
        "byte_order": "big", "scale": 1e-05, "unit": "W", "min": 0.0, "max": 84825.0,
        "homeassistant": {"device_class": "power", "state_class": "measurement"}}),
    (ABB_RTU, "ActiveEnergyBalanceAC_ActiveNetAC", {
        "table": "holding", "address": 20488, "type": "int64", "word_order": "big",
        "byte_order": "big", "scale": 0.01, "unit": "kWh", "homeassistant": KWH}),
    (ABB_RTU, "PowerQuadrant_PowerQuadrantACL3", {
        "table": "holding", "address": 23361, "type": "uint16", "byte_order": "big",
        "homeassistant": {"state_class": "measurement"}}),
    (ABB_TCP, "ActivePowerAC_ActivePowerACL2", {
        "table": "holding", "address": 23320, "type": "int32", "word_order": "big",
        "byte_order": "big", "scale": 1e-05, "unit": "kW",
        "homeassistant": {"device_class": "power", "state_class": "measurement"}}),
    (ABB_TCP, "ReactiveEnergyAC_Export_ReactiveEnergyACL3", {
        "table": "holding", "address": 21656, "type": "uint64", "word_order": "big",
        "byte_order": "big", "scale": 0.01, "unit": "kvarh", "min": 0.0,
        # reactive_energy is newer than the Home Assistant rules the bridge checks
        # against (bridge/core/ha_classes.py): the device class is left out
        "homeassistant": {"state_class": "total_increasing"}}),
    (ABB_TCP, "PowerFactor_PowerFactorACtot", {
        "table": "holding", "address": 23354, "type": "int16", "byte_order": "big",
        "scale": 0.1, "unit": "%", "homeassistant": {"state_class": "measurement"}}),
    (ABB_TCP, "PowerQuadrant_PowerQuadrantACtot", {
        "table": "holding", "address": 23358, "type": "uint16", "byte_order": "big",
        "min": 1.0, "max": 4.0, "homeassistant": {"state_class": "measurement"}}),
    (WAGO, "VoltageAC_VoltageACL2_L3", {
        "table": "holding", "address": 20534, "type": "float32", "word_order": "big",
        "byte_order": "big", "unit": "V", "homeassistant": V}),
    (WAGO, "ApparentPowerAC_ApparentPowerACL1", {
        "table": "holding", "address": 20516, "type": "float32", "word_order": "big",
        "byte_order": "big", "unit": "kVA", "homeassistant": {"state_class": "measurement"}}),
    (WAGO, "ActiveEnergyAC_ActiveEnergyACtot", {
        "table": "holding", "address": 24576, "type": "float32", "word_order": "big",
        "byte_order": "big", "unit": "kWh", "homeassistant": KWH}),
    (WAGO, "CurrentDirection_CurrentDirL1", {
        "table": "holding", "address": 16402, "type": "string", "length": 1,
        "byte_order": "big"}),
    # '-' folds to '_'; a scaling factor applies to floats too
    (WAGO_BLOCK, "VoltageAC_VoltageACL1_L2", {
        "table": "holding", "address": 20530, "type": "float32", "word_order": "big",
        "byte_order": "big", "unit": "V", "homeassistant": V}),
    (WAGO_BLOCK, "CurrentAC_CurrentACL2", {
        "table": "holding", "address": 20494, "type": "float32", "word_order": "big",
        "byte_order": "big", "scale": 0.01, "unit": "A",
        "homeassistant": {"device_class": "current", "state_class": "measurement"}}),
    # Stiebel Eltron counts addresses from 1
    (STIEBEL, "HeatPumpBase_HPOpModeCmd", {
        "table": "holding", "address": 1500, "type": "uint16", "byte_order": "big",
        "writable": True, "values": {0: "STI_WP_EMERG_OP", 1: "STI_WP_READY",
                                     2: "STI_WP_PROG_OP", 3: "STI_WP_COMFORT_OP",
                                     4: "STI_WP_ECO_OP", 5: "STI_WP_DOM_WATER_OP"}}),
    (STIEBEL, "HeatPumpBase_HPOpStateAsBitmap", {
        "table": "input", "address": 2500, "type": "uint16", "byte_order": "big"}),
    (STIEBEL, "HeatPumpBase_HPOpStateAsBitmap_STI_COMPRESSOR_RUNNING", {
        "table": "input", "address": 2500, "type": "bool", "bit": 6}),
    (STIEBEL, "HeatPumpBase_HPOpStateAsBitmap_STI_COOLING_MODE_ACTIVE", {
        "table": "input", "address": 2500, "type": "bool", "bit": 8}),
    (STIEBEL, "HeatPumpBase_ErrorNrSGr", {
        "table": "input", "address": 2503, "type": "bool", "byte_order": "big"}),
    (STIEBEL, "HeatPumpBase_OutsideAirTemp", {
        "table": "input", "address": 506, "type": "int16", "byte_order": "big", "scale": 0.1,
        "unit": "°C", "homeassistant": C, "min": -60.0, "max": 80.0}),
    (STIEBEL, "HeatCoolCtrl_1_SupplyWaterTempSetpointComfort", {
        "table": "holding", "address": 1501, "type": "int16", "byte_order": "big",
        "scale": 0.1, "unit": "°C", "min": 5.0, "max": 30.0, "writable": True,
        # a writable number has no state class in Home Assistant
        "homeassistant": {"device_class": "temperature"}}),
    (STIEBEL, "SG_ReadyStates_SGReadyEnabled", {
        "table": "holding", "address": 4000, "type": "bool", "byte_order": "big",
        "writable": True}),
    (STIEBEL, "SG_ReadyStates_SGReadyOpModeCmd", {
        "table": "holding", "address": 4001, "type": "uint32", "word_order": "big",
        "byte_order": "big", "writable": True,
        "values": {65536: "HP_LOCKED", 0: "HP_NORMAL", 1: "HP_INTENSIFIED",
                   65537: "HP_FORCED"}}),
    (STIEBEL, "SG_ReadyStates_SGReadyState", {
        "table": "input", "address": 5000, "type": "uint16", "byte_order": "big",
        "values": {2: "HP_LOCKED", 0: "HP_NORMAL", 1: "HP_INTENSIFIED", 3: "HP_FORCED"}}),
    # 2RegBase1000_L2H: kWh in the first register, MWh in the second
    (STIEBEL, "EnergyMonitor_ActiveEnergyACheat", {
        "table": "input", "address": 3511, "type": "base1000", "word_order": "little",
        "byte_order": "big", "unit": "kWh", "homeassistant": KWH}),
    (STIEBEL, "EnergyMonitor_RuntimeHeating", {
        "table": "input", "address": 3538, "type": "uint16", "byte_order": "big", "unit": "h",
        "homeassistant": {"device_class": "duration", "state_class": "measurement"}}),
]


@pytest.mark.parametrize(("eid", "name", "expected"), ROWS,
                         ids=[f"{e[:14]}-{n}" for e, n, _ in ROWS])
def test_mapped_datapoint(eid: str, name: str, expected: dict[str, Any]) -> None:
    assert point(mapped(eid), name) == {"name": name, **expected}


def test_stiebel_bitmap_flags_cover_single_bits() -> None:
    flags = [p for p in mapped(STIEBEL).points
             if p["name"].startswith("HeatPumpBase_HPOpStateAsBitmap_")]
    assert [p["bit"] for p in flags] == list(range(12))


def test_writes_false_imports_read_only() -> None:
    assert not any(p.get("writable") for p in mapped(STIEBEL, writes=False).points)


def test_profiles_exclude_rename() -> None:
    result = mapped(STIEBEL, profiles=["SG-ReadyStates", "EnergyMonitor"],
                    exclude=["EnergyMonitor/RuntimeHeating"],
                    rename={"SG-ReadyStates/SGReadyOpModeCmd": "sg_ready"})
    names = [p["name"] for p in result.points]
    assert names == ["SG_ReadyStates_SGReadyEnabled", "sg_ready",
                     "SG_ReadyStates_SGReadyState", "EnergyMonitor_ActiveEnergyACheat",
                     "EnergyMonitor_ActiveEnergyACDomHotWater", "EnergyMonitor_ThermalEnergyHeat",
                     "EnergyMonitor_ThermalEnergyDomHotWater",
                     "EnergyMonitor_RuntimeDomHotWater"]
    assert result.refs["sg_ready"] == "SG-ReadyStates/SGReadyOpModeCmd"
