"""Home Assistant discovery on MQTT: the glue around the pure `homeassistant.py`.

- On every connect: publish all discovery configs (retained), the bridge's first.
- HA's birth message (`online` on the status topic): publish them again after a
  short random delay, so a fleet of bridges does not answer at the same instant,
  then the current states (HA re-subscribes and wants values at once).
- Stale configs: the bridge subscribes to `<prefix>/+/+/+/config`; the broker hands
  it every retained config there. One that claims this instance (unique_id prefix
  and its device is ours or hangs off ours) at a topic this bridge no longer
  publishes (a removed datapoint or device) is cleared with an empty retained
  message, which makes HA delete the entity. Order does not matter: the current
  topics are known up front, so whether the replay comes before or after our own
  publishes, only stale ones are cleared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Iterable

from bridge.config.load import Config
from bridge.features.homeassistant import Discovery, Entity
from bridge.mqtt.inbox import Inbound
from bridge.mqtt.topics import Topics

log = logging.getLogger(__name__)

Publish = Callable[..., Awaitable[bool]]
BIRTH_DELAY = (0.5, 3.0)  # seconds, uniform: HA's restart storm spread over bridges


class HomeAssistantDiscovery:
    def __init__(self, config: Config, topics: Topics, publish: Publish,
                 republish_states: Callable[[], Awaitable[None]],
                 serving: Callable[[], Collection[str]], *,
                 birth_delay: tuple[float, float] = BIRTH_DELAY) -> None:
        self.builder = Discovery(config, topics)
        self._serving = serving  # devices another instance holds are not ours to show
        self.status_topic = config.homeassistant.birth_topic
        self.prefix = config.homeassistant.prefix
        self._publish = publish
        self._republish_states = republish_states
        self.birth_delay = birth_delay
        self._cleared: set[str] = set()
        self._built: tuple[tuple[str, ...], list[Entity], set[str]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def subscriptions(self) -> list[str]:
        return [self.status_topic, f"{self.prefix}/+/+/+/config"]

    def handles(self, topic: str) -> bool:
        return topic == self.status_topic or (
            topic.startswith(self.prefix + "/") and topic.endswith("/config"))

    def _build(self) -> tuple[tuple[str, ...], list[Entity], set[str]]:
        serving = tuple(self._serving())
        if self._built is None or self._built[0] != serving:
            # Built once per set of served devices: every retained config under the
            # prefix (others' too) is checked against `current`.
            entities = self.builder.entities(serving)
            self._built = (serving, entities, {e.topic for e in entities})
        return self._built

    @property
    def entities(self) -> list[Entity]:
        return self._build()[1]

    @property
    def current(self) -> set[str]:
        return self._build()[2]

    async def publish_configs(self) -> None:
        for entity in self.entities:
            await self._publish(entity.topic, entity.payload(), retain=True)

    async def withdraw(self, devices: Iterable[str]) -> None:
        """Remove devices from HA (another instance serves them): empty retained configs."""
        for entity in self.builder.entities(set(devices), bridge=False):
            await self._publish(entity.topic, b"", retain=True)

    async def on_connect(self) -> None:
        await self.publish_configs()

    def on_message(self, message: Inbound) -> None:
        if message.topic == self.status_topic:
            # A retained `online` is an old birth: the connect just published everything.
            if not message.retain and message.payload.strip() == b"online":
                self._spawn(self._after_birth(), "ha-birth")
            return
        if not message.retain or not message.payload or message.topic in self.current \
                or message.topic in self._cleared:
            return
        try:
            config = json.loads(message.payload)
        except (UnicodeDecodeError, ValueError):
            return  # someone else's business
        if self.builder.is_ours(config):
            self._cleared.add(message.topic)
            log.info("Home Assistant: clearing stale discovery config %s", message.topic)
            self._spawn(self._publish(message.topic, b"", retain=True), "ha-clear")

    async def _after_birth(self) -> None:
        await asyncio.sleep(random.uniform(*self.birth_delay))
        log.info("Home Assistant came online: publishing discovery configs again")
        await self.publish_configs()
        await self._republish_states()

    def _spawn(self, work: Awaitable[object], name: str) -> None:
        async def run() -> None:
            await work
        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
