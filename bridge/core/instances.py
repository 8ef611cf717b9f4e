"""Several bridges on one base topic: instance names and who serves which device.

A serial port belongs to the machine it is plugged into, so a site with ports on
several machines runs one bridge per machine against one broker. Each bridge is
an *instance* (`bridge.instance`, default "main"); device ids must be unique
across the instances sharing a base topic, since device topics are flat.

Every bridge publishes, retained, which devices it serves (`bridge/info`) and
whether it is alive (`bridge/state`). `Claims` reads those of the others and
decides, for a device id two live instances both serve, which one keeps it: the
one that started first (ties: the smaller instance name), so a bridge that has
been serving a device keeps it when a misconfigured second one appears, and the
newcomer refuses that device and says which instance holds it. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_INSTANCE = "main"
INSTANCE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # fullmatch: "$" would take "x\n"
# Leaves of `<base>/bridge/...`: an instance with one of these names would make
# `<base>/bridge/<instance>` read as an unnamed bridge's topic.
BRIDGE_TOPIC_NAMES = frozenset({"state", "info", "health", "request", "response", "sync"})


def instance_problem(value: str) -> str | None:
    if not INSTANCE_RE.fullmatch(value):
        return "must match [A-Za-z0-9_-]{1,64} (it is a level of MQTT topics and HA ids)"
    if value in BRIDGE_TOPIC_NAMES:
        return (f"{value!r} is reserved: {', '.join(sorted(BRIDGE_TOPIC_NAMES))} are"
                " the bridge's own topics")
    return None


@dataclass
class Peer:
    """What another instance says about itself (its retained bridge/state and info)."""

    online: bool = False
    started_at: str = ""
    devices: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Conflict:
    device: str
    other: str  # the other instance
    ours: bool  # True: we keep the device, the other should refuse it


@dataclass
class Claims:
    """Our instance's view of the other instances on the same base topic."""

    instance: str
    started_at: str
    devices: frozenset[str]
    peers: dict[str, Peer] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # device -> instance holding it
    _contested: set[tuple[str, str]] = field(default_factory=set)  # (device, newcomer) told

    def on_state(self, instance: str, payload: str) -> None:
        if instance != self.instance:
            self.peers.setdefault(instance, Peer()).online = payload.strip() == "online"

    def on_info(self, instance: str, info: Any) -> None:
        """Another instance's bridge/info (parsed JSON); malformed ones claim nothing."""
        if instance == self.instance:
            return
        peer = self.peers.setdefault(instance, Peer())
        if not isinstance(info, Mapping):
            peer.devices = frozenset()
            return
        devices = info.get("devices")
        peer.devices = frozenset(d for d in devices if isinstance(d, str)) \
            if isinstance(devices, list) else frozenset()
        started = info.get("started_at")
        peer.started_at = started if isinstance(started, str) else ""

    def conflicts(self) -> list[Conflict]:
        """Devices we serve (not yet refused) that a live instance also claims."""
        found: list[Conflict] = []
        for name, peer in sorted(self.peers.items()):
            if not peer.online:
                continue
            for device in sorted(peer.devices & self.serving):
                found.append(Conflict(device, name, self._we_win(name, peer)))
        return found

    def settle(self) -> tuple[list[Conflict], list[Conflict]]:
        """Refuse the devices other instances hold first. Returns (newly refused, kept
        against a newcomer). A refusal lasts for the life of this process: when the
        other instance goes away its device is still a different machine's."""
        lost, kept = [], []
        for conflict in self.conflicts():
            if conflict.ours:
                if (conflict.device, conflict.other) not in self._contested:
                    self._contested.add((conflict.device, conflict.other))
                    kept.append(conflict)
            else:
                self.refused[conflict.device] = conflict.other
                lost.append(conflict)
        return lost, kept

    @property
    def serving(self) -> frozenset[str]:
        return self.devices - set(self.refused)

    def _we_win(self, other: str, peer: Peer) -> bool:
        # ISO 8601 UTC timestamps of one format order as text. An instance that does
        # not say when it started is taken to be older: it has been there first.
        return (self.started_at, self.instance) < (peer.started_at, other)


def refused_message(device: str, holder: str) -> str:
    return (f"device {device!r} is not served by this bridge: instance {holder!r} already"
            f" serves a device with that id on the same base topic (device ids must be"
            f" unique across bridges; rename one of them)")

