"""Routes a command to its device (or to the bridge itself) and answers it.

One command, one answer: parsed (`core.parse`, which checks it completely), run by
the device's runner under its deadline, answered on `<device>/response` (retained)
and, with MQTT v5, on the command's Response Topic when it lies under the reply
prefix. Retained commands are dropped: they would run again at every reconnect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from bridge.core import parse
from bridge.core.errors import BridgeError, InternalError
from bridge.core.instances import Claims
from bridge.core.ratelimit import LogBudget, clip, held_note
from bridge.device.runner import DeviceRunner
from bridge.features.bridge_requests import BridgeRequests
from bridge.mqtt import results
from bridge.mqtt.inbox import Inbound
from bridge.mqtt.topics import Topics

log = logging.getLogger(__name__)


class Publish(Protocol):
    def __call__(self, topic: str, payload: bytes | str, *, retain: bool = False,
                 correlation_data: bytes | None = None) -> Awaitable[bool]: ...


class Router:
    def __init__(self, topics: Topics, runners: Mapping[str, DeviceRunner],
                 allow_raw: Mapping[str, bool], claims: Claims,
                 bridge_requests: BridgeRequests, publish: Publish, *,
                 command_deadline: float) -> None:
        self.topics = topics
        self.runners = runners
        self.allow_raw = allow_raw
        self.claims = claims
        self.bridge_requests = bridge_requests
        self.publish = publish
        self.command_deadline = command_deadline
        self._budget = LogBudget(burst=10, period=60.0)

    async def route(self, message: Inbound) -> None:
        """Run one command and answer it; a message that is no command is ignored."""
        if message.topic == self.topics.bridge_request:
            await self._bridge_request(message)
            return
        inbound = self.topics.parse(message.topic)
        if inbound is None or inbound.device not in self.runners or \
                inbound.device in self.claims.refused:
            return  # a refused device's commands are the other instance's to answer
        if self._retained(message):
            return
        device = inbound.device
        runner = self.runners[device]
        started = time.monotonic()
        # A v5 Message Expiry may shorten the deadline, never extend it: the sender
        # does not get to keep a port's queue slot longer than the operator allows.
        seconds = self.command_deadline
        if message.expiry is not None:
            seconds = min(seconds, message.expiry)
        deadline = started + seconds
        request_id: Any = None
        op: str = inbound.kind
        try:
            try:
                if inbound.kind == "request":
                    request = parse.parse_request(message.payload, runner.device.points,
                                                     self.allow_raw[device])
                    request_id, op, command = request.id, request.op, request.command
                elif inbound.kind == "set" and inbound.point is not None:
                    command = parse.parse_set_point(inbound.point, message.payload,
                                                       runner.device.points)
                elif inbound.kind == "set":
                    command = parse.parse_set(message.payload, runner.device.points)
                else:
                    command = parse.parse_get(message.payload, runner.device.points)
            except parse.Rejected as rejected:
                request_id, op = rejected.request_id, rejected.op or op
                raise rejected.error from None
            fields = await runner.execute(command, deadline)
            body = results.success(request_id=request_id, op=op, device=device,
                                   duration_ms=_ms(started), **fields)
        except BridgeError as exc:
            body = results.failure(request_id=request_id, op=op, device=device,
                                   error=exc, duration_ms=_ms(started))
        except Exception:
            if self._budget.take("internal") is not None:
                log.exception("internal error handling %s", clip(message.topic))
            body = results.failure(request_id=request_id, op=op, device=device,
                                   error=InternalError("internal error"),
                                   duration_ms=_ms(started))
        await self._answer(message, self.topics.response(device), body)

    def _retained(self, message: Inbound) -> bool:
        """A retained command would run again at every reconnect: drop it, say so."""
        if not message.retain:
            return False
        held = self._budget.take("retained")
        if held is not None:
            log.warning("dropped a retained message on %s (commands must not be "
                        "retained)%s", clip(message.topic), held_note(held))
        return True

    async def _bridge_request(self, message: Inbound) -> None:
        if self._retained(message):
            return
        body = await self.bridge_requests.handle(message.payload)
        await self._answer(message, self.topics.bridge_response, body)

    async def _answer(self, message: Inbound, topic: str, body: dict[str, Any]) -> None:
        refused = None
        if message.response_topic is not None:
            refused = self.topics.reply_refused(message.response_topic)
            if refused is not None:
                # Said where the sender looks anyway, instead of silence.
                body["reply_refused"] = refused
        payload = results.to_json(body)
        await self.publish(topic, payload, retain=True)
        if message.response_topic is not None and refused is None:
            await self.publish(message.response_topic, payload,
                               correlation_data=message.correlation_data)


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
