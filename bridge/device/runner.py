"""One device at run time: polling, availability, state, and executing commands.

Availability is decided by `core.availability` from each transaction's outcome
(the same classification the bus uses for back-off); this module publishes
(retained) and logs the transitions, never each failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from bridge.core.availability import Availability, outcome_of
from bridge.core.commands import RawRead, RawWrite, ReadPoints, WritePoints
from bridge.core.errors import BusError
from bridge.core.points import Value
from bridge.core.ratelimit import LogBudget, held_note
from bridge.device.unit import Device, ReadResult
from bridge.modbus.bus import Priority
from bridge.mqtt import results
from bridge.mqtt.topics import Topics

log = logging.getLogger(__name__)


class Publish(Protocol):
    def __call__(self, topic: str, payload: bytes | str, *, retain: bool = False
                 ) -> Awaitable[bool]: ...


class DeviceRunner:
    def __init__(self, device: Device, topics: Topics, publish: Publish, *,
                 poll_interval: float, offline_after: int, per_point_topics: bool) -> None:
        self.device = device
        self.topics = topics
        self._publish = publish
        self.poll_interval = poll_interval
        self.per_point_topics = per_point_topics
        self.availability = Availability(offline_after)
        # A unit that flaps (three garbled replies, one good, ...) must not write two
        # lines per few polls: transitions are logged within a budget.
        self._budget = LogBudget(burst=10, period=60.0)
        self.state: dict[str, Value | None] = {}
        self.last_seen: str | None = None
        self._published_points: dict[str, str] = {}
        self._point_topics: dict[str, str] = {}

    @property
    def id(self) -> str:
        return self.device.id

    # -- availability ------------------------------------------------------------

    @property
    def online(self) -> bool | None:
        return self.availability.online

    async def record(self, error: BusError | None) -> None:
        """Account one transaction outcome; publish availability on transitions."""
        previous = self.availability.online
        changed = self.availability.record(outcome_of(error))
        if changed is None:
            return
        held = self._budget.take("availability")
        if held is not None and not changed:
            reason = error.message if error is not None else "not answering"
            log.warning("device %s went offline: %s%s", self.id, reason, held_note(held))
        elif held is not None and previous is False:
            log.info("device %s is back online%s", self.id, held_note(held))
        await self.publish_availability()

    async def publish_availability(self) -> None:
        if self.online is not None:
            await self._publish(self.topics.availability(self.id),
                                "online" if self.online else "offline", retain=True)

    # -- state -------------------------------------------------------------------

    async def absorb(self, read: ReadResult) -> None:
        """Merge values read into the state and publish it (retained)."""
        if not read.values:
            return
        self.state.update(read.values)
        self.last_seen = results.utc_timestamp()
        await self.publish_state()

    async def publish_state(self, force_points: bool = False) -> None:
        if not self.state:
            return
        body: dict[str, Any] = dict(self.state)
        body["last_seen"] = self.last_seen
        await self._publish(self.topics.device_state(self.id), results.to_json(body),
                            retain=True)
        if not self.per_point_topics:
            return
        for name, value in self.state.items():
            text = _plain(value)
            if force_points or self._published_points.get(name) != text:
                self._published_points[name] = text
                topic = self._point_topics.get(name)
                if topic is None:  # built (and checked) once per datapoint
                    topic = self._point_topics[name] = self.topics.datapoint(self.id, name)
                await self._publish(topic, text, retain=True)

    # -- polling -----------------------------------------------------------------

    async def poll_once(self) -> None:
        try:
            read = await self.device.read_points(priority=Priority.POLL)
        except BusError as exc:
            await self.record(exc)
            return
        await self.record(None)
        await self.absorb(read)

    async def poll_forever(self) -> None:
        if self.poll_interval <= 0:
            return
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.poll_once()
            except Exception:  # a bug must not end this device's polling for good
                log.exception("device %s: unexpected error while polling", self.id)
            next_at += self.poll_interval
            now = loop.time()
            if next_at < now:  # fell behind (dead unit, slow bus): don't burst to catch up
                next_at = now
            await asyncio.sleep(next_at - now)

    # -- commands ----------------------------------------------------------------

    async def execute(self, command: object, deadline: float | None) -> dict[str, Any]:
        """Run one parsed command; returns the result fields or raises BridgeError."""
        try:
            fields = await self._execute(command, deadline)
        except BusError as exc:
            await self.record(exc)
            raise
        await self.record(None)
        return fields

    async def _execute(self, command: object, deadline: float | None) -> dict[str, Any]:
        dev = self.device
        if isinstance(command, RawRead):
            data = await dev.read_raw(command.table, command.address, command.count,
                                      deadline=deadline)
            key = "bits" if command.table.is_bits else "registers"
            return {"address": command.address, "count": command.count, key: data}
        if isinstance(command, RawWrite):
            await dev.write_raw(command.table, command.address, command.values,
                                single=command.single, deadline=deadline)
            return {"address": command.address, "count": len(command.values)}
        if isinstance(command, ReadPoints):
            names = list(command.names) or None
            read = await dev.read_points(names, deadline=deadline)
            if read.errors and not read.values:
                # Nothing could be read: the command failed (e.g. exception 2), say so.
                raise next(iter(read.errors.values()))
            await self.absorb(read)
            return _values(read)
        if isinstance(command, WritePoints):
            read = await dev.write_points(command, deadline=deadline)
            await self.absorb(read)  # what the device reports, not what was asked
            return _values(read)
        raise TypeError(f"unknown command {command!r}")


def _values(read: ReadResult) -> dict[str, Any]:
    fields: dict[str, Any] = {"values": read.values}
    if read.errors:
        fields["errors"] = {name: err.to_wire() for name, err in read.errors.items()}
    return fields


def _plain(value: Value | None) -> str:
    if value is None:  # a NaN float; an empty payload would delete the retained topic
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
