"""Composition root: builds the registry, devices, runners and the MQTT link, runs
them in one task group, and shuts down cleanly (offline published, ports closed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from typing import Any

from bridge import __version__
from bridge.config.load import Config, DeviceSettings
from bridge.core.errors import BridgeError, InternalError, RequestError
from bridge.core.instances import Claims
from bridge.core.ratelimit import clip
from bridge.core.stats import MqttStats
from bridge.core.transport import SerialLine
from bridge.device.runner import DeviceRunner
from bridge.device.unit import Device
from bridge.features.bridge_requests import BridgeRequests
from bridge.features.discovery import HomeAssistantDiscovery
from bridge.features.health import Health, Sources
from bridge.features.instances import Instances
from bridge.features.metrics import MetricsServer
from bridge.modbus.registry import ClientRegistry, ModbusClientWrapper
from bridge.mqtt import results
from bridge.mqtt.inbox import Inbound
from bridge.mqtt.link import MqttLink
from bridge.mqtt.topics import Topics
from bridge.router import Router

log = logging.getLogger(__name__)

# Seconds for stopping pollers and saying offline (a frozen broker never acks), plus
# up to 1 s for closing ports: SIGTERM must end the process within 5 s.
SHUTDOWN_BUDGET = 3.0


class Bridge:
    def __init__(self, config: Config, registry: ClientRegistry | None = None) -> None:
        self.config = config
        self.topics = Topics(config.mqtt.base_topic, config.bridge.instance,
                             reply_prefix=config.mqtt.reply_prefix,
                             reserved=[config.homeassistant.prefix])
        self.registry = registry or ClientRegistry(queue_size=config.bus.queue_size,
                                                   backoff_max=config.bus.backoff_max)
        self.started_at = results.utc_timestamp()
        self.runners: dict[str, DeviceRunner] = {}
        self.wrappers: dict[str, ModbusClientWrapper] = {}
        self.allow_raw: dict[str, bool] = {}
        for dev in config.devices:
            _log_device(dev)
            wrapper = self.registry.register(dev.transport, dev.id, frame_gap=dev.frame_gap)
            device = Device(dev.id, dev.unit, wrapper.bus, dev.points(), timeout=dev.timeout,
                            retries=dev.retries, max_gap=dev.max_gap)
            self.wrappers[dev.id] = wrapper
            self.allow_raw[dev.id] = dev.allow_raw_writes
            self.runners[dev.id] = DeviceRunner(
                device, self.topics, self.publish, poll_interval=dev.poll_interval,
                offline_after=dev.offline_after,
                per_point_topics=config.mqtt.per_datapoint_topics)
        self.claims = Claims(self.topics.instance, self.started_at, frozenset(self.runners))
        self.instances = Instances(self.topics, self.claims, self._on_claims)
        self.bridge_requests = BridgeRequests(self.registry)
        self.discovery = HomeAssistantDiscovery(
            config, self.topics, self.publish, self.publish_states, lambda: self.serving) \
            if config.homeassistant.discovery else None
        self.link = MqttLink(config.mqtt, will_topic=self.topics.bridge_state,
                             subscriptions=[*self.topics.subscriptions(list(self.runners)),
                                            self.topics.bridge_request,
                                            *self.instances.subscriptions(),
                                            *(self.discovery.subscriptions
                                              if self.discovery else [])])
        self.mqtt_stats = MqttStats()
        self.sources = Sources(
            time.monotonic(), self.started_at, self.mqtt_stats, self.link,
            {w.identifier: w.bus for w in self.registry.clients.values()}, self.runners)
        self.health = Health(self.sources, self.topics.bridge_health, self.publish,
                             config.health_interval) if config.health_interval > 0 else None
        self.metrics = MetricsServer(self.sources, config.metrics.host, config.metrics.port) \
            if config.metrics.port is not None else None
        self.router = Router(self.topics, self.runners, self.allow_raw, self.claims,
                             self.bridge_requests, self.publish,
                             command_deadline=config.bus.command_deadline)
        self._handlers: set[asyncio.Task[None]] = set()
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self.stopping = asyncio.Event()
        if config.mqtt.protocol != "5":
            log.info("MQTT 3.1.1: v5-only features are off: commands' Response Topic and"
                     " Correlation Data (answers go to <base>/<device>/response only),"
                     " Message Expiry as a deadline (bus.command_deadline applies), and"
                     " Retain As Published (a retained command is recognised only when"
                     " replayed on subscribe)")

    @property
    def serving(self) -> list[str]:
        """Device ids this bridge serves: configured, minus those another instance holds."""
        return [d for d in self.runners if d not in self.claims.refused]

    async def publish(self, topic: str, payload: bytes | str, *, retain: bool = False,
                      correlation_data: bytes | None = None) -> bool:
        """Publish without waiting for the broker's acknowledgement: QoS is kept, but a
        poller or a command does not stall on a round trip per message. False: dropped
        (disconnected, or the broker stopped acknowledging)."""
        ok = self.link.post(topic, payload, retain=retain, correlation_data=correlation_data)
        self.mqtt_stats.sent(ok)
        return ok

    # -- lifecycle ----------------------------------------------------------------

    async def run(self, install_signal_handlers: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            # SIGHUP (a closed terminal, or `kill -HUP`) ended the process with no log
            # line and left every device retained online: it stops cleanly too.
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.add_signal_handler(sig, self._signalled, sig)
        if self.metrics is not None:
            await self.metrics.start()
        tasks = [asyncio.create_task(self.link.run(self.on_connect, self.on_message),
                                     name="mqtt")]
        if self.health is not None:
            tasks.append(asyncio.create_task(self.health.run(), name="health"))
        for dev_id, runner in self.runners.items():
            self._pollers[dev_id] = asyncio.create_task(self._start_device(dev_id, runner),
                                                        name=f"poll[{dev_id}]")
            tasks.append(self._pollers[dev_id])
        stop = asyncio.create_task(self.stopping.wait(), name="stop")
        try:
            # The MQTT link only ends by a bug; then stop loudly (a supervisor restarts
            # us) rather than keep polling with nobody listening.
            await asyncio.wait([stop, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            await self.shutdown(tasks)
        if tasks[0].done() and not tasks[0].cancelled() and tasks[0].exception():
            raise InternalError(f"MQTT link failed: {tasks[0].exception()!r}")

    def _signalled(self, sig: signal.Signals) -> None:
        if not self.stopping.is_set():
            log.info("%s received", signal.Signals(sig).name)
        self.stopping.set()

    async def _start_device(self, dev_id: str, runner: DeviceRunner) -> None:
        # Serve only after the other instances' claims are in (first connect).
        await self.instances.settled.wait()
        if dev_id in self.claims.refused:
            return
        try:
            await self.wrappers[dev_id].connect_async(dev_id)
        except BridgeError as exc:
            # Not fatal: the bus keeps reopening the port with back-off, and the
            # poller logs the device going offline with this reason.
            if isinstance(exc, RequestError):
                raise
            log.debug("device %s: %s", dev_id, exc.message)
        await runner.poll_forever()

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        log.info("stopping: answering commands in flight, publishing offline, closing ports")
        pollers = [t for t in tasks if t.get_name() != "mqtt"]
        for task in pollers:
            task.cancel()
        if self.discovery is not None:
            await self.discovery.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        # Every command queued or on the wire is answered port_unavailable now, and its
        # handler publishes that answer while the link is still up.
        for wrapper in self.registry.clients.values():
            wrapper.bus.stop("bridge stopping")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_BUDGET):
                await asyncio.gather(*pollers, return_exceptions=True)
                if self._handlers:
                    await asyncio.wait(set(self._handlers))
                for dev_id in self.serving:
                    await self.publish(self.topics.availability(dev_id), "offline", retain=True)
                # Acknowledged in order: when this one is, all of the above are out.
                await self.link.publish(self.topics.bridge_state, "offline", retain=True)
        for task in [*tasks, *self._handlers]:
            task.cancel()
        await asyncio.gather(*tasks, *self._handlers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.registry.close()

    async def on_connect(self) -> None:
        """(Re)publish everything retained: the broker may have forgotten it. First the
        other instances' claims are read (messages flow only after this returns)."""
        if self.stopping.is_set():
            return  # a connect that completes while stopping publishes nothing
        await self.publish(self.topics.bridge_state, "online", retain=True)
        self._spawn(self._after_connect(), "sync")

    async def _after_connect(self) -> None:
        await self.instances.sync(self.publish)
        await self.publish_info()
        if self.discovery is not None:
            await self.discovery.on_connect()  # before the states: HA has the entities
        await self.publish_states()
        if self.health is not None:
            await self.health.publish()

    async def publish_states(self) -> None:
        """Bridge state, and each served device's availability and state (retained)."""
        await self.publish(self.topics.bridge_state, "online", retain=True)
        # Every availability before the states: with 100 devices the states are
        # thousands of messages, and the last device's `online` waited behind them.
        for dev_id in self.serving:
            await self.runners[dev_id].publish_availability()
        for dev_id in self.serving:
            await self.runners[dev_id].publish_state(force_points=True)

    async def publish_info(self) -> None:
        await self.publish(self.topics.bridge_info, results.to_json(self.info()), retain=True)

    async def _on_claims(self, refused: list[str], contested: list[str]) -> None:
        """Stop serving devices another instance holds; re-assert the ones we keep (a
        newcomer may have published over them before it saw our claim)."""
        for dev_id in refused:
            poller = self._pollers.get(dev_id)
            if poller is not None:
                poller.cancel()
        if refused:
            await self.publish_info()
            if self.discovery is not None:
                await self.discovery.withdraw(refused)
        for dev_id in contested:
            await self.runners[dev_id].publish_availability()
            await self.runners[dev_id].publish_state(force_points=True)

    def info(self) -> dict[str, Any]:
        ports = []
        for wrapper in self.registry.clients.values():
            transport = wrapper.transport
            settings = dict(transport.__dict__) if transport is not None else {}
            ports.append({"port": wrapper.identifier,
                          "kind": "serial" if isinstance(transport, SerialLine) else "tcp",
                          "settings": settings,
                          "devices": sorted(wrapper.registered_devices
                                            - set(self.claims.refused))})
        info: dict[str, Any] = {"version": __version__, "instance": self.topics.instance,
                                "started_at": self.started_at,
                                "devices": self.serving, "ports": ports,
                                "refused": dict(self.claims.refused)}
        eids = {dev.id: {"file": dev.eid.file, "datapoints": len(dev.datapoints),
                         "skipped": [{"datapoint": ref, "reason": why}
                                     for ref, why in dev.eid.skipped]}
                for dev in self.config.devices if dev.eid is not None}
        if eids:
            info["eid"] = eids
        return info

    # -- commands -------------------------------------------------------------------

    def on_message(self, message: Inbound) -> None:
        self.mqtt_stats.received += 1
        if self.discovery is not None and self.discovery.handles(message.topic):
            self.discovery.on_message(message)
            return
        self._spawn(self.handle(message), f"cmd[{clip(message.topic)}]")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def handle(self, message: Inbound) -> None:
        if self.instances.concerns(message.topic) and \
                await self.instances.handle(message.topic, message.payload):
            return
        await self.router.route(message)


def _log_device(dev: DeviceSettings) -> None:
    """Once at start: what an EID gave, skipped and noted (also in bridge/info), and
    which datapoints wear the device's flash (from an EID or the config)."""
    if dev.eid is not None:
        log.info("device %s: %d datapoints from EID %s", dev.id, len(dev.datapoints),
                 dev.eid.file)
        for ref, why in dev.eid.skipped:
            log.info("device %s: skipped EID data point %s: %s", dev.id, ref, why)
        for note in dev.eid.notes:
            log.warning("device %s: EID: %s", dev.id, note)
    writes_flash = [p.name for p in dev.points() if p.persistent]
    if writes_flash:
        log.info("device %s: writes to %s are stored in flash, which wears: write rarely",
                 dev.id, ", ".join(writes_flash))

