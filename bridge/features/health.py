"""`<base>/bridge/health` (mqtt-api.md): retained, every `health_interval` seconds.

The report is built from the same counters the Prometheus metrics read (the bus's
`PortStats`, the bridge's `MqttStats`), so the two never disagree:

    {"ts", "started_at", "uptime_s", "devices_online", "devices_total",
     "mqtt": {"connected", "connects", "published", "dropped", "received"},
     "totals": {"requests", "errors", "timeouts"},
     "ports": {"<port>": {"devices", "requests", "errors": {"<code>": n}, "timeouts",
                          "queue_depth", "latency_ms": {"p50", "p99"}, "last_success",
                          "reopens"}},
     "devices": {"<device>": {"port", "unit", "online", "requests", "errors",
                              "timeouts", "queue_depth", "latency_ms", "last_success"}}}

Latency is over the last 1,000 successful transactions; `last_success` is an ISO
8601 UTC time or null. Error codes are the wire codes, with the exception number
for Modbus exception responses (`modbus_exception_2`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.core.stats import Counters, MqttStats
from bridge.device.runner import DeviceRunner
from bridge.modbus.bus import Bus
from bridge.mqtt import results
from bridge.mqtt.link import MqttLink

log = logging.getLogger(__name__)

Publish = Callable[..., Awaitable[bool]]


@dataclass(frozen=True)
class Sources:
    """What health and metrics read: the live objects, never copies."""

    started: float  # time.monotonic() at start
    started_at: str
    mqtt: MqttStats
    link: MqttLink
    ports: Mapping[str, Bus]  # port identifier -> its bus
    runners: Mapping[str, DeviceRunner]

    def uptime(self) -> float:
        return time.monotonic() - self.started


def iso(wall: float | None) -> str | None:
    return None if wall is None else results.utc_timestamp(wall)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _counters(c: Counters, queue_depth: int) -> dict[str, Any]:
    return {"requests": c.requests, "errors": dict(c.errors), "timeouts": c.timeouts,
            "queue_depth": queue_depth,
            "latency_ms": {"p50": _ms(c.percentile(0.5)), "p99": _ms(c.percentile(0.99))},
            "last_success": iso(c.last_success)}


def report(src: Sources) -> dict[str, Any]:
    ports: dict[str, Any] = {}
    for name, bus in src.ports.items():
        on_port = sorted(d for d, r in src.runners.items() if r.device.bus is bus)
        ports[name] = {"devices": on_port, **_counters(bus.stats, bus.queue_depth),
                       "reopens": bus.stats.reopens}
    devices: dict[str, Any] = {}
    for dev_id, runner in src.runners.items():
        bus, unit = runner.device.bus, runner.device.unit
        devices[dev_id] = {"port": bus.name, "unit": unit, "online": runner.online,
                           **_counters(bus.stats.unit(unit), bus.queued(unit))}
    return {
        "ts": results.utc_timestamp(),
        "started_at": src.started_at,
        "uptime_s": round(src.uptime(), 1),
        "devices_online": sum(1 for r in src.runners.values() if r.online),
        "devices_total": len(src.runners),
        "mqtt": {"connected": src.link.connected.is_set(), "connects": src.link.connects,
                 "published": src.mqtt.published, "dropped": src.mqtt.dropped,
                 "received": src.mqtt.received},
        "totals": {"requests": sum(b.stats.requests for b in src.ports.values()),
                   "errors": sum(sum(b.stats.errors.values()) for b in src.ports.values()),
                   "timeouts": sum(b.stats.timeouts for b in src.ports.values())},
        "ports": ports,
        "devices": devices,
    }


class Health:
    """Publishes the report every `interval` seconds, and at once after a connect."""

    def __init__(self, sources: Sources, topic: str, publish: Publish,
                 interval: float) -> None:
        self.sources = sources
        self.topic = topic
        self._publish = publish
        self.interval = interval

    async def publish(self) -> None:
        await self._publish(self.topic, results.to_json(report(self.sources)), retain=True)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.publish()
            except Exception:  # a bug here must not end the reports for good
                log.exception("health report failed")
