"""Several bridges on one base topic: watch the other instances' retained
`bridge/state` and `bridge/info`, and refuse to serve a device id another live
instance already serves (mqtt-api.md, "Several bridges on one broker").

At every (re)connect the bridge subscribes to those topics of all instances and
then publishes a marker to itself: the broker delivers the retained messages of a
subscription before a later publish on the same connection, so when the marker
comes back every retained claim has been seen. Only then does the bridge publish
its own info and start serving, so two bridges started with the same device id
never both publish it. If the marker does not come back (an ACL that forbids
reading it), the bridge goes on after `SYNC_TIMEOUT` and says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable

from bridge.core.instances import Claims, refused_message
from bridge.mqtt.topics import Topics

log = logging.getLogger(__name__)

SYNC_TIMEOUT = 3.0  # seconds for the marker to come back


class Instances:
    def __init__(self, topics: Topics, claims: Claims,
                 on_change: Callable[[list[str], list[str]], Awaitable[None]]) -> None:
        """`on_change(refused, contested)` runs after new conflicts: device ids this
        bridge now refuses, and ids it keeps that a newer instance also claimed."""
        self.topics = topics
        self.claims = claims
        self._on_change = on_change
        self._sync_topic = topics.bridge("sync")
        self._nonce = os.urandom(8).hex()
        self._synced = asyncio.Event()
        self.settled = asyncio.Event()  # the first sync is done: devices may start

    def subscriptions(self) -> list[str]:
        # State before info: a claim is weighed by whether its instance is alive.
        return [*self.topics.bridges("state"), *self.topics.bridges("info"), self._sync_topic]

    async def sync(self, publish: Callable[[str, bytes], Awaitable[bool]]) -> None:
        """After subscribing: wait until the retained claims are in, then settle."""
        self._synced.clear()
        if await publish(self._sync_topic, self._nonce.encode()):
            try:
                async with asyncio.timeout(SYNC_TIMEOUT):
                    await self._synced.wait()
            except TimeoutError:
                log.warning("did not receive %s back within %.0f s (does the broker's ACL"
                            " let the bridge read its own topics?); checking device ids"
                            " against other bridges with what arrived so far",
                            self._sync_topic, SYNC_TIMEOUT)
        await self._settle()
        self.settled.set()

    def concerns(self, topic: str) -> bool:
        """Whether `topic` may be one of `subscriptions()`: all of them lie in the
        bridges' namespace, which a device command's topic never does. Asked per
        command before `handle`, a coroutine and four topic comparisons."""
        return topic.startswith(self.topics.bridges_namespace)

    async def handle(self, topic: str, payload: bytes) -> bool:
        """Take a message on one of `subscriptions()`; False if it is not one."""
        if topic == self._sync_topic:
            if payload == self._nonce.encode():
                self._synced.set()
            return True
        if topic in (self.topics.bridge_state, self.topics.bridge_info):
            return True  # our own
        instance = self.topics.bridge_of(topic, "state")
        if instance is not None:
            self.claims.on_state(instance, payload.decode("utf-8", "replace"))
        else:
            instance = self.topics.bridge_of(topic, "info")
            if instance is None:
                return False
            try:
                info = json.loads(payload) if payload else None
            except (ValueError, RecursionError):
                info = None
            self.claims.on_info(instance, info)
        if self.settled.is_set():
            await self._settle()
        return True

    async def _settle(self) -> None:
        lost, kept = self.claims.settle()
        for conflict in lost:
            log.error("%s", refused_message(conflict.device, conflict.other))
        for conflict in kept:
            log.warning("instance %r also claims device %r; this bridge served it first and"
                        " keeps it (%r should refuse it)", conflict.other, conflict.device,
                        conflict.other)
        if lost or kept:
            await self._on_change([c.device for c in lost], [c.device for c in kept])
