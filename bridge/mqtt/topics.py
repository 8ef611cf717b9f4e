"""The MQTT topic scheme (mqtt-api.md), built and parsed in one place.

Everything that knows what `<base>/<device>/set/<dp>` looks like lives here, so
the MQTT layer never splits or joins topic strings itself.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Literal

from bridge.core.instances import BRIDGE_TOPIC_NAMES, DEFAULT_INSTANCE

Kind = Literal["request", "set", "get"]

# The bridge's own namespace under <base>: never a device, so `<base>/bridge/set`
# is not a command for a device called "bridge".
BRIDGE = "bridge"


_NOT_IN_A_LEVEL = re.compile("[/+#\0]")
_WILDCARD_OR_NUL = re.compile("[+#\0]")


def _check_level(level: str, what: str) -> str:
    """One topic level: non-empty, no separator, no wildcard.

    A device id or datapoint name with '/', '+' or '#' would build a topic that
    means something else (or a filter that matches other devices); the config
    forbids them, this catches programming errors at the edge.
    """
    if not level or _NOT_IN_A_LEVEL.search(level):
        raise ValueError(f"{what} {level!r} is not a valid MQTT topic level")
    return level


@dataclass(frozen=True)
class Inbound:
    """A message on one of the topics the bridge subscribes to."""

    device: str
    kind: Kind
    point: str | None = None  # only for `<base>/<device>/set/<dp>`


class Topics:
    """The topics of one bridge under `base` (which may itself contain '/').

    `instance` is `bridge.instance` as configured: when set, the bridge's own
    topics move to `<base>/bridge/<instance>/...` so several bridges can share a
    base topic (mqtt-api.md, "Several bridges on one broker"); device topics stay
    flat. `self.instance` is the name used everywhere else (info, HA ids): the
    configured one, else "main".

    MQTT v5 replies (a command's Response Topic) may go under `reply_prefix` only
    (None: nowhere), never under the base or another prefix in `reserved` (the HA
    discovery prefix).
    """

    def __init__(self, base: str, instance: str | None = None, *,
                 reply_prefix: str | None = None, reserved: Iterable[str] = ()) -> None:
        levels = base.split("/")
        for level in levels:
            _check_level(level, "base topic level")
        # '$' topics are the broker's ($SYS); wildcard subscriptions skip them.
        if base.startswith("$"):
            raise ValueError(f"base topic {base!r} must not start with '$'")
        if instance is not None and instance in BRIDGE_TOPIC_NAMES:
            raise ValueError(f"instance {instance!r} would read as a bridge topic")
        self.base = base
        self.instance = instance or DEFAULT_INSTANCE
        self.explicit_instance = instance is not None
        self._prefix = base + "/"
        # `<base>/bridge/`: where every bridge's own topics lie, named or not.
        self.bridges_namespace = f"{base}/{BRIDGE}/"
        self._bridge = f"{base}/{BRIDGE}" + (
            f"/{_check_level(instance, 'instance')}" if instance is not None else "")
        self.reply_prefix = reply_prefix
        self._reserved = [base, *reserved]
        self._built: dict[str, str] = {}  # bridge(name), by name
        self._built_devices: dict[str, str] = {}  # device_state(device), by device

    # -- the bridge's own topics -------------------------------------------------

    def bridge(self, name: str) -> str:
        """`<base>/bridge/<name>`, or `<base>/bridge/<instance>/<name>` for a named
        instance: every bridge-level topic (state, info, health, features') is built
        here so that several bridges on one base never collide. Kept once built:
        every command compares its topic with some of them."""
        topic = self._built.get(name)
        if topic is None:
            topic = self._built[name] = f"{self._bridge}/{_check_level(name, 'bridge topic')}"
        return topic

    @property
    def bridge_state(self) -> str:
        return self.bridge("state")

    @property
    def bridge_info(self) -> str:
        return self.bridge("info")

    @property
    def bridge_health(self) -> str:
        return self.bridge("health")

    @property
    def bridge_request(self) -> str:
        """Commands to the bridge itself (scan)."""
        return self.bridge("request")

    @property
    def bridge_response(self) -> str:
        return self.bridge("response")

    def bridges(self, name: str) -> list[str]:
        """Filters matching topic `name` of every bridge on this base, named or not."""
        return [f"{self.bridges_namespace}{name}", f"{self.bridges_namespace}+/{name}"]

    def bridge_of(self, topic: str, name: str) -> str | None:
        """The instance whose topic `name` this is (as `bridges(name)` matches), or None.
        The plain `<base>/bridge/<name>` belongs to an unnamed bridge: "main"."""
        head = self.bridges_namespace
        if not topic.startswith(head) or not topic.endswith("/" + name):
            return None
        middle = topic[len(head):-len(name) - 1]
        if middle == "":
            return DEFAULT_INSTANCE
        if "/" in middle or not middle or "+" in middle or "#" in middle:
            return None
        return middle

    # -- device topics ----------------------------------------------------------

    def device_state(self, device: str) -> str:
        topic = self._built_devices.get(device)
        if topic is None:  # kept once built, as bridge topics are
            topic = self._built_devices[device] = f"{self.base}/{self._device(device)}"
        return topic

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
        if not device or device == BRIDGE or "+" in device or "#" in device:
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

    def reply_refused(self, topic: str) -> str | None:
        """Why a command's v5 Response Topic may not be published to, or None if it may.

        A reply published anywhere would let anyone who may send a command write the
        bridge's JSON where the bridge's word counts: a device's availability, the
        bridge's state, another device's response, or another bridge's command topic.
        """
        if self.reply_prefix is None:
            return "this bridge sends no MQTT v5 replies (mqtt.reply_prefix is null)"
        if not topic.startswith(self.reply_prefix + "/") or \
                len(topic) == len(self.reply_prefix) + 1:
            return f"response topic must be under {self.reply_prefix}/"
        if _WILDCARD_OR_NUL.search(topic):
            return "response topic must not contain wildcards"
        for reserved in self._reserved:
            if topic == reserved or topic.startswith(reserved + "/"):
                return f"response topic must not be under {reserved}/"
        return None

    def _device(self, device: str) -> str:
        if _check_level(device, "device id") == BRIDGE:
            raise ValueError(f"device id {BRIDGE!r} is reserved for the bridge's own topics")
        return device
