"""What Home Assistant accepts for an entity: component, device class, unit, state class.

Pure data and rules. The tables are Home Assistant's documented sensor rules
(developers.home-assistant.io, "Sensor entity": device classes with their units,
and the state classes each device class allows), as in the Home Assistant version
the tests run against (tests/integration/test_homeassistant_real.py compares
them with that version's own tables). HA drops or warns about an entity whose unit
or state class does not fit its device class, in a log nobody reads; the config
loader refuses such a datapoint instead, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from bridge.core.points import Datapoint, DataType

MEASUREMENT, TOTAL, TOTAL_INCREASING = "measurement", "total", "total_increasing"
MEASUREMENT_ANGLE = "measurement_angle"
STATE_CLASSES = (MEASUREMENT, MEASUREMENT_ANGLE, TOTAL, TOTAL_INCREASING)


class Component(StrEnum):
    """An entity kind the bridge publishes; `domain` is HA's component name."""

    SENSOR = "sensor"
    ENUM = "enum"  # a sensor with device_class enum and options
    BINARY_SENSOR = "binary_sensor"
    NUMBER = "number"
    SWITCH = "switch"
    SELECT = "select"
    TEXT = "text"

    @property
    def domain(self) -> str:
        return "sensor" if self is Component.ENUM else self.value

    @property
    def commands(self) -> bool:
        return self in (Component.NUMBER, Component.SWITCH, Component.SELECT, Component.TEXT)


def component_of(kind: DataType, writable: bool, mapped: bool) -> Component:
    """The entity for a datapoint of type `kind`; `mapped`: it has a value map."""
    if kind is DataType.BOOL:
        return Component.SWITCH if writable else Component.BINARY_SENSOR
    if mapped:
        return Component.SELECT if writable else Component.ENUM
    if kind is DataType.STRING:
        return Component.TEXT if writable else Component.SENSOR
    return Component.NUMBER if writable else Component.SENSOR


def component(point: Datapoint) -> Component:
    return component_of(point.type, point.writable, bool(point.values))


def _units(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_PRESSURE = _units("Pa bar cbar hPa inHg kPa mbar mmHg psi")
_ENERGY = _units("GJ GWh Gcal J MJ MWh Mcal TWh Wh cal kJ kWh kcal mWh")
_VOLUME = (*_units("CCF L ft³ gal mL m³"), "fl. oz.")
_SPEED = _units("Beaufort ft/s in/s km/h kn m/s mm/s mph")
_MASS_CONCENTRATION = _units("µg/m³")
_POWER = _units("GW MW TW W kW mW")
_VOLTAGE = _units("MV V kV mV µV")
_CURRENT = _units("A mA")
_TEMPERATURE = _units("K °C °F")
_FREQUENCY = _units("GHz Hz MHz kHz")
_FLOW = _units("L/min ft³/min gal/min mL/s m³/h")

# Device class -> the units HA accepts (None: no unit). Classes absent here take any
# unit (monetary: a currency code) or none (date, enum, timestamp: not numeric).
SENSOR_UNITS: Mapping[str, tuple[str | None, ...]] = {
    "apparent_power": ("VA",),
    **dict.fromkeys(("aqi", "ph"), (None,)),
    "area": _units("ac cm² ft² ha in² km² mi² mm² m² yd²"),
    **dict.fromkeys(("atmospheric_pressure", "pressure"), _PRESSURE),
    **dict.fromkeys(("battery", "humidity", "moisture"), ("%",)),
    "blood_glucose_concentration": _units("mg/dL mmol/L"),
    **dict.fromkeys(("carbon_monoxide", "carbon_dioxide"), ("ppm",)),
    "conductivity": _units("S/cm mS/cm µS/cm"),
    "current": _CURRENT,
    "data_rate": _units("B/s GB/s Gbit/s GiB/s KiB/s MB/s Mbit/s MiB/s bit/s kB/s kbit/s"),
    "data_size": _units("B EB EiB GB Gbit GiB KiB MB Mbit MiB PB PiB TB TiB YB YiB ZB ZiB"
                        " bit kB kbit"),
    "distance": _units("cm ft in km m mi mm nmi yd"),
    "duration": _units("d h min ms s \u03bcs"),  # HA spells microseconds with Greek mu
    **dict.fromkeys(("energy", "energy_storage"), _ENERGY),
    "energy_distance": _units("kWh/100km km/kWh mi/kWh"),
    "frequency": _FREQUENCY,
    "gas": _units("CCF ft³ m³"),
    "illuminance": ("lx",),
    "irradiance": _units("BTU/(h⋅ft²) W/m²"),
    **dict.fromkeys(("nitrogen_dioxide", "nitrogen_monoxide", "nitrous_oxide", "ozone", "pm1",
                     "pm10", "pm25", "sulphur_dioxide", "volatile_organic_compounds"),
                    _MASS_CONCENTRATION),
    "power_factor": ("%", None),
    "power": _POWER,
    "precipitation": _units("cm in mm"),
    "precipitation_intensity": _units("in/d in/h mm/d mm/h"),
    "reactive_power": ("var",),
    "signal_strength": _units("dB dBm"),
    "sound_pressure": _units("dB dBA"),
    "speed": (*_SPEED, *_units("in/d in/h mm/d mm/h")),
    "temperature": _TEMPERATURE,
    "volatile_organic_compounds_parts": _units("ppb ppm"),
    "voltage": _VOLTAGE,
    **dict.fromkeys(("volume", "volume_storage"), _VOLUME),
    "volume_flow_rate": _FLOW,
    "water": _units("CCF L ft³ gal m³"),
    "weight": _units("g kg lb mg oz st µg"),
    "wind_direction": ("°",),
    "wind_speed": _SPEED,
}
NON_NUMERIC = ("date", "enum", "timestamp")
ANY_UNIT = ("monetary",)
SENSOR_CLASSES = frozenset({*SENSOR_UNITS, *NON_NUMERIC, *ANY_UNIT})
# Number entities take the numeric sensor classes, with the same units.
NUMBER_CLASSES = SENSOR_CLASSES - set(NON_NUMERIC)

# Device class -> the state classes HA allows; a class not listed takes only measurement.
_ALL_STATES = frozenset(STATE_CLASSES)
_TOTALS = frozenset({TOTAL, TOTAL_INCREASING})
SENSOR_STATE_CLASSES: Mapping[str, frozenset[str]] = {
    **dict.fromkeys(("area", "data_size", "distance", "duration", "precipitation"), _ALL_STATES),
    **dict.fromkeys(NON_NUMERIC, frozenset()),
    **dict.fromkeys(("energy", "gas", "volume", "water"), _TOTALS),
    "monetary": frozenset({TOTAL}),
    "weight": frozenset({MEASUREMENT, TOTAL, TOTAL_INCREASING}),
    "wind_direction": frozenset({MEASUREMENT_ANGLE}),
}
_MEASUREMENT_ONLY = frozenset({MEASUREMENT})

BINARY_SENSOR_CLASSES = frozenset(_units(
    "battery battery_charging carbon_monoxide cold connectivity door garage_door gas heat"
    " light lock moisture motion moving occupancy opening plug power presence problem"
    " running safety smoke sound tamper update vibration window"))
SWITCH_CLASSES = frozenset({"outlet", "switch"})

# Sensible defaults from a datapoint's unit; ambiguous units (%, m³, ppm, dB) get a
# state class only: the user says whether % is humidity or a battery.
UNIT_DEFAULTS: Mapping[str, tuple[str, str]] = {
    **dict.fromkeys(_ENERGY, ("energy", TOTAL_INCREASING)),
    **dict.fromkeys(_POWER, ("power", MEASUREMENT)),
    **dict.fromkeys(_VOLTAGE, ("voltage", MEASUREMENT)),
    **dict.fromkeys(_CURRENT, ("current", MEASUREMENT)),
    **dict.fromkeys(_TEMPERATURE, ("temperature", MEASUREMENT)),
    **dict.fromkeys(_FREQUENCY, ("frequency", MEASUREMENT)),
    **dict.fromkeys(_PRESSURE, ("pressure", MEASUREMENT)),
    **dict.fromkeys(_FLOW, ("volume_flow_rate", MEASUREMENT)),
    "VA": ("apparent_power", MEASUREMENT),
    "var": ("reactive_power", MEASUREMENT),
    "lx": ("illuminance", MEASUREMENT),
    "W/m²": ("irradiance", MEASUREMENT),
    **dict.fromkeys(("s", "min", "h", "d", "ms"), ("duration", MEASUREMENT)),
}


def state_classes(device_class: str | None) -> frozenset[str]:
    if device_class is None:
        return _ALL_STATES
    return SENSOR_STATE_CLASSES.get(device_class, _MEASUREMENT_ONLY)


def classes(kind: Component, unit: str | None, numeric: bool,
            explicit: Mapping[str, str | None]) -> tuple[str | None, str | None]:
    """(device_class, state_class) of an entity: what the config says (`explicit`
    holds only the keys it sets, null included), else derived from the unit."""
    if kind is Component.ENUM:
        return "enum", None
    if kind in (Component.SELECT, Component.TEXT):
        return None, None
    default_class, default_state = None, None
    if numeric and kind in (Component.SENSOR, Component.NUMBER) and unit is not None \
            and unit in UNIT_DEFAULTS:
        default_class, default_state = UNIT_DEFAULTS[unit]
    device_class = explicit.get("device_class", default_class)
    if kind is not Component.SENSOR or not numeric:
        return device_class, None  # state classes are for numeric sensors only
    if "state_class" in explicit:
        return device_class, explicit["state_class"]
    if device_class == default_class and default_state is not None:
        return device_class, default_state
    return device_class, MEASUREMENT if MEASUREMENT in state_classes(device_class) else None


def problems(kind: Component, unit: str | None, numeric: bool,
             explicit: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """(field, message) for each combination HA would reject; field is `device_class`
    or `state_class` of the datapoint's homeassistant block."""
    found: list[tuple[str, str]] = []
    given_class = explicit.get("device_class")
    if given_class is not None:
        allowed = _classes_for(kind, numeric)
        if given_class not in allowed:
            what = f"a {kind.domain}" if kind is not Component.ENUM else "an enum sensor"
            choice = ", ".join(sorted(allowed)) if allowed else "none"
            found.append(("device_class", f"{given_class!r} is not a device class Home"
                                          f" Assistant accepts for {what} (this datapoint);"
                                          f" allowed: {choice}"))
            return found
    if explicit.get("state_class") is not None and (kind is not Component.SENSOR
                                                   or not numeric):
        found.append(("state_class", f"only read-only numeric datapoints (sensors) have a"
                                     f" state class; this one is a {kind.domain}"))
        return found
    device_class, state_class = classes(kind, unit, numeric, explicit)
    if device_class is not None and device_class in SENSOR_UNITS \
            and kind in (Component.SENSOR, Component.NUMBER) \
            and unit not in SENSOR_UNITS[device_class]:
        units = ", ".join(u if u is not None else "none" for u in SENSOR_UNITS[device_class])
        found.append(("device_class", f"device class {device_class!r} needs unit {units};"
                                      f" the datapoint's unit is "
                                      f"{unit if unit is not None else 'not set'}"))
    if state_class is not None and state_class not in state_classes(device_class):
        allowed_states = ", ".join(sorted(state_classes(device_class))) or "none"
        found.append(("state_class", f"state class {state_class!r} does not fit device class"
                                     f" {device_class!r} (allowed: {allowed_states})"))
    return found


def _classes_for(kind: Component, numeric: bool) -> frozenset[str]:
    if kind is Component.BINARY_SENSOR:
        return BINARY_SENSOR_CLASSES
    if kind is Component.SWITCH:
        return SWITCH_CLASSES
    if kind is Component.ENUM:
        return frozenset({"enum"})
    if kind is Component.NUMBER:
        return NUMBER_CLASSES
    if kind is Component.SENSOR:
        return NUMBER_CLASSES if numeric else frozenset({"date", "timestamp"})
    return frozenset()
