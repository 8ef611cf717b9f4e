"""Home Assistant MQTT discovery payloads (mqtt-api.md, "Home Assistant discovery").

Pure: builds `(topic, config dict)` pairs from the validated config; the MQTT side
(publishing, HA's birth message, clearing stale configs) is `discovery.py`.

- One retained config per datapoint at `<prefix>/<component>/<node>/<dp>/config`,
  `<node>` = `<instance>_<device>` folded to `[A-Za-z0-9_-]`.
- The component follows type and direction: sensor (numbers, strings), sensor with
  device_class enum (read-only value maps), binary_sensor, number, switch, select,
  and text for writable strings (HA has no read-write string otherwise).
- The state is read from `<base>/<device>` with a template that yields what HA
  expects (`ON`/`OFF`, an option label, a number) and `None` (HA: unknown) when the
  value is missing or not something HA would accept.
- Commands go to `<base>/<device>/set/<dp>`, whose parser takes HA's payloads as they
  are (`ON`/`OFF`, `21.5`, an option label).
- The bridge itself is an HA device (connectivity and health sensors); every bridge
  device points to it with `via_device`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bridge import __version__
from bridge.config.load import Config, DatapointSettings, DeviceSettings
from bridge.core import ha_classes
from bridge.core.ha_classes import Component
from bridge.core.points import Datapoint, DataType
from bridge.mqtt.topics import Topics

ORIGIN = {"name": "modbus-mqtt-bridge", "sw": __version__}
ON, OFF = "ON", "OFF"
# HA refuses a number's step below this (its MQTT number schema).
MIN_STEP = 0.001
FLOAT_LIMITS = {DataType.FLOAT32: 3.4028234663852886e38, DataType.FLOAT64: 1.7976931348623157e308}
TEXT_MAX = 255  # HA's longest text entity value


@dataclass(frozen=True)
class Entity:
    """One discovery config: where it is published and what it says."""

    topic: str
    config: dict[str, Any]

    @property
    def unique_id(self) -> str:
        return str(self.config["unique_id"])

    def payload(self) -> str:
        return json.dumps(self.config, ensure_ascii=False, separators=(",", ":"))


def fold(text: str) -> str:
    """A discovery topic level: HA accepts only [A-Za-z0-9_-] in node and object ids."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def entity_slug(text: str) -> str:
    """An entity id's object part: HA allows only lowercase [a-z0-9_]."""
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def bridge_identifier(instance: str) -> str:
    """The bridge's own HA device. `bridge` can never be a device id (it is the bridge's
    topic namespace), so this cannot collide with `<instance>_<device>`."""
    return f"{instance}_bridge"


class Discovery:
    """All discovery configs of one bridge, built from its config."""

    def __init__(self, config: Config, topics: Topics) -> None:
        self.config = config
        self.topics = topics
        self.prefix = config.homeassistant.prefix
        self.instance = config.bridge.instance_id
        self.bridge_id = bridge_identifier(self.instance)

    def entities(self, devices: Collection[str] | None = None, *,
                 bridge: bool = True) -> list[Entity]:
        """All configs (of `devices` only, when given). The bridge's own entities come
        first: HA links a device's via_device only to a device it already knows."""
        chosen = [dev for dev in self.config.devices if devices is None or dev.id in devices]
        return [*(self.bridge_entities() if bridge else ()),
                *(e for dev in chosen for e in self.device_entities(dev))]

    def is_ours(self, config: object) -> bool:
        """Whether a retained discovery config was published by this bridge instance
        (unique_id prefix, and the device is ours or hangs off ours)."""
        if not isinstance(config, dict):
            return False
        unique_id, device = config.get("unique_id"), config.get("device")
        if not isinstance(unique_id, str) or not unique_id.startswith(self.instance + "_"):
            return False
        if not isinstance(device, dict):
            return False
        identifiers = device.get("identifiers")
        return device.get("via_device") == self.bridge_id or (
            isinstance(identifiers, list) and self.bridge_id in identifiers)

    # -- the bridge --------------------------------------------------------------

    def bridge_device(self) -> dict[str, Any]:
        name = "Modbus bridge" if self.config.bridge.instance is None else \
            f"Modbus bridge {self.instance}"
        return {"identifiers": [self.bridge_id], "name": name, "model": ORIGIN["name"],
                "sw_version": __version__}

    def bridge_entities(self) -> Iterator[Entity]:
        node = fold(self.bridge_id)
        device = self.bridge_device()
        yield self._entity(Component.BINARY_SENSOR, node, "connectivity", {
            "name": "Connectivity", "device": device,
            "state_topic": self.topics.bridge_state, "payload_on": "online",
            "payload_off": "offline", "device_class": "connectivity",
            "entity_category": "diagnostic"})
        if self.config.health_interval <= 0:
            return  # no health topic to read from
        health = {"state_topic": self.topics.bridge_health, "entity_category": "diagnostic",
                  "device": device, "availability": [{"topic": self.topics.bridge_state}]}
        for key, name, template, extra in HEALTH_SENSORS:
            yield self._entity(Component.SENSOR, node, key, {
                "name": name, **health, "value_template": template, **extra})

    # -- devices -----------------------------------------------------------------

    def device_block(self, dev: DeviceSettings) -> dict[str, Any]:
        block: dict[str, Any] = {"identifiers": [f"{self.instance}_{dev.id}"],
                                 "name": dev.name or dev.id}
        for key in ("manufacturer", "model", "sw_version"):
            if (value := getattr(dev, key)) is not None:
                block[key] = value
        block["via_device"] = self.bridge_id
        return block

    def device_entities(self, dev: DeviceSettings) -> Iterator[Entity]:
        node = fold(f"{self.instance}_{dev.id}")
        device = self.device_block(dev)
        common = {
            "device": device,
            "availability": [{"topic": self.topics.bridge_state},
                             {"topic": self.topics.availability(dev.id)}],
            "availability_mode": "all",
        }
        for settings, point in zip(dev.datapoints, dev.points(), strict=True):
            body = {"name": settings.label or settings.name, **common,
                    **self._datapoint(dev, settings, point)}
            yield self._entity(ha_classes.component(point), node, point.name, body)

    def _datapoint(self, dev: DeviceSettings, settings: DatapointSettings,
                   point: Datapoint) -> dict[str, Any]:
        kind = ha_classes.component(point)
        ha = settings.homeassistant
        given = ha.model_fields_set if ha is not None else set()
        device_class, state_class = ha_classes.classes(
            kind, point.unit, point.type.is_numeric,
            {k: getattr(ha, k) for k in given if k in ("device_class", "state_class")})
        body: dict[str, Any] = {}
        if point.readable:
            body.update(state_topic=self.topics.device_state(dev.id),
                        value_template=value_template(point, kind))
        # else write-only: without a state topic HA shows what it last commanded
        if kind.commands:
            body["command_topic"] = self.topics.set_point(dev.id, point.name)
        if kind in (Component.SENSOR, Component.NUMBER) and point.type.is_numeric:
            if point.unit is not None:
                body["unit_of_measurement"] = point.unit
            precision = display_precision(point)
            if precision is not None:
                body["suggested_display_precision"] = precision
        if kind in (Component.ENUM, Component.SELECT):
            body["options"] = list(point.values.values())
        elif kind in (Component.BINARY_SENSOR, Component.SWITCH):
            body.update(payload_on=ON, payload_off=OFF)
        elif kind is Component.NUMBER:
            low, high = number_range(point)
            body.update(min=low, max=high, step=step(point), mode="box")
        elif kind is Component.TEXT:
            body.update(max=min(TEXT_MAX, 2 * (point.length or 1)), mode="text")
        if device_class is not None:
            body["device_class"] = device_class
        if state_class is not None:
            body["state_class"] = state_class
        if ha is not None:
            if ha.entity_category is not None:
                body["entity_category"] = ha.entity_category
            if not ha.enabled:
                body["enabled_by_default"] = False
            if ha.icon is not None:
                body["icon"] = ha.icon
        return body

    def _entity(self, kind: Component, node: str, key: str, body: dict[str, Any]) -> Entity:
        slug = entity_slug(f"{node}_{key}")
        config = {
            "unique_id": f"{node}_{key}",
            # default_entity_id is what HA 2025.10+ reads; object_id what older ones do.
            "default_entity_id": f"{kind.domain}.{slug}",
            "object_id": slug,
            **body,
            "origin": ORIGIN,
        }
        return Entity(f"{self.prefix}/{kind.domain}/{node}/{fold(key)}/config", config)


# The bridge's diagnostic sensors, read from <base>/bridge/health (health.py).
HEALTH_SENSORS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("uptime", "Uptime", "{{ value_json.uptime_s | round(0) }}",
     {"unit_of_measurement": "s", "device_class": "duration"}),
    ("devices_online", "Devices online", "{{ value_json.devices_online }}",
     {"state_class": "measurement"}),
    ("requests", "Modbus requests", "{{ value_json.totals.requests }}",
     {"state_class": "total_increasing"}),
    ("errors", "Modbus errors", "{{ value_json.totals.errors }}",
     {"state_class": "total_increasing"}),
    ("timeouts", "Modbus timeouts", "{{ value_json.totals.timeouts }}",
     {"state_class": "total_increasing"}),
)


def value_template(point: Datapoint, kind: Component) -> str:
    """A Jinja template from the device's state JSON to the state HA expects.

    `None` is HA's word for unknown (sensor, binary_sensor, switch, number, select all
    take it), used for a value not read yet, a NaN, or a raw value outside the map.
    """
    get = f"value_json.get({json.dumps(point.name)})"
    if kind in (Component.BINARY_SENSOR, Component.SWITCH):
        return (f"{{% set v = {get} %}}"
                f"{{{{ 'None' if v is none else ('{ON}' if v else '{OFF}') }}}}")
    if kind in (Component.ENUM, Component.SELECT):
        options = json.dumps(list(point.values.values()))
        return f"{{% set v = {get} %}}{{{{ v if v in {options} else 'None' }}}}"
    return f"{{{{ {get} }}}}"


def decimals(number: float) -> int:
    exponent = Decimal(repr(float(number))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def display_precision(point: Datapoint) -> int | None:
    """Decimals a value can carry: those of scale and offset (0.1 -> 1). None for
    unscaled floats: their precision is the device's business."""
    if point.type.is_float and point.scale == 1 and point.offset == 0:
        return None
    return max(decimals(point.scale), decimals(point.offset))


def step(point: Datapoint) -> float | int:
    """The resolution: one raw step (|scale|) for integers; floats take HA's finest."""
    if point.type.is_float:
        return MIN_STEP
    resolution = max(abs(point.scale), MIN_STEP)
    return int(resolution) if float(resolution).is_integer() else resolution


def number_range(point: Datapoint) -> tuple[float, float]:
    """min/max for a number entity: the datapoint's own, else what its type can hold."""
    if point.type.is_float:
        limit = FLOAT_LIMITS[point.type]
        low, high = -limit, limit
    else:
        raw_low, raw_high = point.type.raw_range
        ends = (_tidy(raw_low * point.scale + point.offset),
                _tidy(raw_high * point.scale + point.offset))
        low, high = min(ends), max(ends)
    low = _tidy(point.min) if point.min is not None else low
    high = _tidy(point.max) if point.max is not None else high
    return low, high


def _tidy(number: float) -> float:
    tidy = float(f"{number:.12g}")
    return int(tidy) if tidy.is_integer() and abs(tidy) < 2**53 else tidy
