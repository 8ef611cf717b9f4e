"""SGr units -> the bridge's unit symbol and Home Assistant's device class.

Each pair is one Home Assistant accepts for sensors (an invalid pair makes HA
drop the entity); units HA has no device class for keep their symbol alone.
Energy units count up: state_class total_increasing; other numbers measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.core import ha_classes
from bridge.core.points import DataType

# SGr unit: (symbol or None, device_class or None)
UNITS: dict[str, tuple[str | None, str | None]] = {
    "AMPERES": ("A", "current"),
    "VOLTS": ("V", "voltage"),
    "WATTS": ("W", "power"),
    "KILOWATTS": ("kW", "power"),
    "WATT_HOURS": ("Wh", "energy"),
    "KILOWATT_HOURS": ("kWh", "energy"),
    "MEGAWATT_HOURS": ("MWh", "energy"),
    "VOLT_AMPERES": ("VA", "apparent_power"),
    "VOLT_AMPERES_REACTIVE": ("var", "reactive_power"),
    "KILOVOLT_AMPERES_REACTIVE": ("kvar", "reactive_power"),
    "KILOVOLT_AMPERES_REACTIVE_HOURS": ("kvarh", "reactive_energy"),
    "HERTZ": ("Hz", "frequency"),
    "POWER_FACTOR": (None, "power_factor"),
    "DEGREES_CELSIUS": ("°C", "temperature"),
    "DEGREES_KELVIN": ("K", "temperature"),
    "BARS": ("bar", "pressure"),
    "PASCALS": ("Pa", "pressure"),
    "PERCENT": ("%", None),
    "PERCENT_RELATIVE_HUMIDITY": ("%", "humidity"),
    "HOURS": ("h", "duration"),
    "MINUTES": ("min", "duration"),
    "SECONDS": ("s", "duration"),
    "CUBIC_METERS": ("m³", "volume"),
    "CUBIC_METERS_PER_SECOND": ("m³/s", "volume_flow_rate"),
    "KILOGRAMS": ("kg", "weight"),
    "METERS": ("m", "distance"),
    "METERS_PER_SECOND": ("m/s", "speed"),
    "WATTS_PER_SQUARE_METER": ("W/m²", "irradiance"),
    "NO_UNITS": (None, None),
    "NONE": (None, None),
    # No Home Assistant device class for these: the symbol alone.
    "DEGREES_PHASE": ("°", None),
    "JOULES": ("J", None),
    "KILOVOLT_AMPERES": ("kVA", None),
    "KILOVOLT_AMPERE_HOURS": ("kVAh", None),
    "METERS_PER_SECOND_PER_SECOND": ("m/s²", None),
    "OHMS": ("Ω", None),
    "PARTS_PER_MILLION": ("ppm", None),
    "PER_HOUR": ("1/h", None),
    "RADIANS": ("rad", None),
    "RADIANS_PER_SECOND": ("rad/s", None),
    "REVOLUTIONS_PER_MINUTE": ("rpm", None),
    "SQUARE_METERS": ("m²", None),
}

ENERGY = frozenset({"Wh", "kWh", "MWh", "kvarh", "J"})


def home_assistant(sgr_unit: str | None, numeric: bool, kind: DataType,
                   dp: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The table's pair, less what Home Assistant would refuse for this entity (a
    state class on a writable number, a device class newer than HA's rules as the
    bridge knows them: bridge/core/ha_classes.py)."""
    unit, block = _from_table(sgr_unit, numeric)
    component = ha_classes.component_of(kind, bool(dp.get("writable")), "values" in dp)
    for _ in range(len(block)):
        refused = {name for name, _ in ha_classes.problems(component, unit, kind.is_numeric,
                                                           dict(block))}
        if not refused:
            break
        for name in refused:
            block.pop(name, None)
    return unit, block


def _from_table(sgr_unit: str | None, numeric: bool) -> tuple[str | None, dict[str, str]]:
    """(unit symbol, homeassistant block) for a datapoint with this SGr unit.

    `numeric`: a plain number (not an enum, bool or string), the only kind that
    gets a unit and a state class. An unknown SGr unit keeps its name as the symbol.
    """
    if not numeric:
        return None, {}
    symbol, device_class = UNITS.get(sgr_unit or "NONE", (sgr_unit, None))
    block = {"state_class": "total_increasing" if symbol in ENERGY else "measurement"}
    if device_class is not None:
        block["device_class"] = device_class
    return symbol, block
