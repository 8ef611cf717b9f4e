"""Read what the bridges on a broker say about themselves (`bridge status`): the
retained bridge state/info of every instance and each device's availability,
state and last response. A client that only listens: no last will, its own id."""

from __future__ import annotations

import asyncio
import contextlib
import os

from bridge.config.load import MqttSettings
from bridge.core.errors import PortUnavailable
from bridge.mqtt.inbox import Inbound
from bridge.mqtt.link import MqttLink
from bridge.mqtt.topics import Topics


def status_filters(topics: Topics) -> list[str]:
    base = topics.base
    return [*topics.bridges("state"), *topics.bridges("info"),
            f"{base}/+/availability", f"{base}/+", f"{base}/+/response"]


async def collect_retained(settings: MqttSettings, filters: list[str], *,
                           connect_timeout: float = 10.0, quiet: float = 0.5,
                           most: float = 5.0) -> dict[str, bytes]:
    """Topic -> payload of the retained messages under `filters`. Retained messages
    come in a burst right after subscribing: collect until `quiet` seconds pass
    without one (at most `most` seconds). Raises PortUnavailable naming the broker
    if it cannot be reached within `connect_timeout`."""
    own = settings.model_copy(update={"client_id": f"{settings.client_id}-status-{os.getpid()}",
                                      "reconnect_max": 1.0})
    link = MqttLink(own, will_topic=None, subscriptions=filters)
    seen: dict[str, bytes] = {}
    arrived = asyncio.Event()

    def on_message(message: Inbound) -> None:
        if message.retain:  # live traffic (polls) is not what the broker keeps
            seen[message.topic] = message.payload
            arrived.set()

    async def on_connect() -> None:
        return None

    task = asyncio.create_task(link.run(on_connect, on_message), name="mqtt-status")
    try:
        try:
            async with asyncio.timeout(connect_timeout):
                await link.connected.wait()
        except TimeoutError:
            raise PortUnavailable(f"MQTT broker {settings.host}:{settings.port} not reachable"
                                  f" within {connect_timeout:g} s") from None
        loop = asyncio.get_running_loop()
        end = loop.time() + most
        while loop.time() < end:
            arrived.clear()
            try:
                async with asyncio.timeout(min(quiet, max(0.0, end - loop.time()))):
                    await arrived.wait()
            except TimeoutError:
                break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return seen
