"""The MQTT topic scheme (mqtt-api.md), built and parsed in one place.

Everything that knows what `<base>/<device>/set/<dp>` looks like lives here, so
the MQTT layer never splits or joins topic strings itself.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Literal

Kind = Literal["request", "set", "get"]

# The bridge's own namespace under <base>: never a device, so `<base>/bridge/set`
# is not a command for a device called "bridge".
BRIDGE = "bridge"


def _check_level(level: str, what: str) -> str:
    """One topic level: non-empty, no separator, no wildcard.

    A device id or datapoint name with '/', '+' or '#' would build a topic that
    means something else (or a filter that matches other devices); the config
    forbids them, this catches programming errors at the edge.
    """
    if not level or any(c in level for c in "/+#\0"):
        raise ValueError(f"{what} {level!r} is not a valid MQTT topic level")
    return level


@dataclass(frozen=True)
class Inbound:
    """A message on one of the topics the bridge subscribes to."""

    device: str
    kind: Kind
    point: str | None = None  # only for `<base>/<device>/set/<dp>`


class Topics:
    """The topics of one bridge under `base` (which may itself contain '/')."""

    def __init__(self, base: str) -> None:
        levels = base.split("/")
        for level in levels:
            _check_level(level, "base topic level")
        # '$' topics are the broker's ($SYS); wildcard subscriptions skip them.
        if base.startswith("$"):
            raise ValueError(f"base topic {base!r} must not start with '$'")
        self.base = base
        self._prefix = base + "/"
        self._depth = len(levels)

    # -- published -----------------------------------------------------------

    @property
    def bridge_state(self) -> str:
        return f"{self.base}/{BRIDGE}/state"

    @property
    def bridge_info(self) -> str:
        return f"{self.base}/{BRIDGE}/info"

    @property
    def bridge_health(self) -> str:
        return f"{self.base}/{BRIDGE}/health"

    def device_state(self, device: str) -> str:
        return f"{self.base}/{self._device(device)}"

    def availability(self, device: str) -> str:
        return f"{self.device_state(device)}/availability"

    def datapoint(self, device: str, point: str) -> str:
        return f"{self.device_state(device)}/{_check_level(point, 'datapoint')}"

    def response(self, device: str) -> str:
        return f"{self.device_state(device)}/response"

    # -- subscribed ----------------------------------------------------------

    def request(self, device: str) -> str:
        return f"{self.device_state(device)}/request"

    def set(self, device: str) -> str:
        return f"{self.device_state(device)}/set"

    def set_point(self, device: str, point: str) -> str:
        return f"{self.set(device)}/{_check_level(point, 'datapoint')}"

    def get(self, device: str) -> str:
        return f"{self.device_state(device)}/get"

    def subscriptions(self, device_ids: Iterable[str]) -> list[str]:
        """Topic filters for all commands to these devices.

        Per device rather than `<base>/+/request`: a stray publisher writing to
        `<base>/ghost/request` then costs the bridge nothing, and the broker
        does the filtering. `set/+` (not `set/#`) because a datapoint name is a
        single level.
        """
        filters: list[str] = []
        for device in device_ids:
            filters += [self.request(device), self.set(device),
                        self.set(device) + "/+", self.get(device)]
        return filters

    def parse(self, topic: str, devices: Container[str] | None = None) -> Inbound | None:
        """The command a topic carries, or None if it is not one of ours.

        None covers: other bases, the bridge's own namespace and output topics
        (state, availability, response, per-datapoint values), wrong shapes
        and, when `devices` is given, devices this bridge does not serve. A
        `set/<dp>` with an unknown name still parses: the command parser
        answers `unknown_datapoint` on the device's response topic, which
        tells the sender more than silence would.
        """
        if not topic.startswith(self._prefix):
            return None
        levels = topic[len(self._prefix):].split("/")
        device = levels[0]
        if not device or device == BRIDGE or any(c in device for c in "+#"):
            return None
        if devices is not None and device not in devices:
            return None
        match levels[1:]:
            case ["request"]:
                return Inbound(device, "request")
            case ["set"]:
                return Inbound(device, "set")
            case ["set", point] if point and "+" not in point and "#" not in point:
                return Inbound(device, "set", point)
            case ["get"]:
                return Inbound(device, "get")
        return None

    def _device(self, device: str) -> str:
        if _check_level(device, "device id") == BRIDGE:
            raise ValueError(f"device id {BRIDGE!r} is reserved for the bridge's own topics")
        return device
