"""The MQTT link: the only module that imports aiomqtt (and paho).

`MqttLink.run()` keeps a connection up: it connects with capped back-off, calls
`on_connect` (the service republishes its retained state there: the broker may
have forgotten it), subscribes, and hands every message to `on_message` as a
plain `Inbound`. While disconnected, `publish()` drops messages instead of
letting aiomqtt queue them for later (a stale result delivered after a
reconnect would be a lie); the service republishes state on reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.config.load import MqttSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    """A received message, free of aiomqtt types."""

    topic: str
    payload: bytes
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None
    expiry: float | None = None  # MQTT v5 Message Expiry Interval, seconds


class MqttLink:
    def __init__(self, settings: MqttSettings, *, will_topic: str,
                 subscriptions: Sequence[str]) -> None:
        self.settings = settings
        self.will_topic = will_topic
        self.subscriptions = list(subscriptions)
        self.v5 = settings.protocol == "5"
        self._client: aiomqtt.Client | None = None
        self._inflight: set[asyncio.Future[None]] = set()
        self.connected = asyncio.Event()

    def _make_client(self) -> aiomqtt.Client:
        s = self.settings
        tls_context = None
        if s.tls is not None:
            tls_context = ssl.create_default_context(cafile=s.tls.ca_file)
            tls_context.sslsocket_class = _ClosingSSLSocket
            if s.tls.cert_file:
                tls_context.load_cert_chain(s.tls.cert_file, s.tls.key_file)
            if s.tls.insecure:
                tls_context.check_hostname = False
        client = aiomqtt.Client(
            s.host, s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password is not None else None,
            identifier=s.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if self.v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.will_topic, b"offline", qos=1, retain=True),
            keepalive=s.keepalive,
            tls_context=tls_context,
            tls_insecure=bool(s.tls and s.tls.insecure) if s.tls else None,
            timeout=10,
            queue_type=_Inbox,
            max_queued_incoming_messages=s.inbox_size,
            # Small messages otherwise stall ~40 ms per hop (Nagle + delayed ACK).
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # aiomqtt warns once per publish while more than 10 await their PUBACK: a
        # command burst is normal work here, not worth ~100 log lines.
        client.pending_calls_threshold = 10_000
        return client

    async def _subscribe(self, client: aiomqtt.Client, topic: str) -> None:
        if not self.v5:
            await client.subscribe(topic, qos=self.settings.qos)
            return
        # Without Retain As Published the broker clears the retain flag on live
        # delivery and a retained command could not be told apart (under 3.1.1 only
        # the replay after subscribing carries the flag).
        options = SubscribeOptions(qos=self.settings.qos, retainAsPublished=True)
        await client.subscribe(topic, options=options)

    async def run(self, on_connect: Callable[[], Awaitable[None]],
                  on_message: Callable[[Inbound], None]) -> None:
        """Stay connected until cancelled; reconnect with capped back-off."""
        delay = self.settings.reconnect_min
        failures = 0
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    for topic in self.subscriptions:
                        await self._subscribe(client, topic)
                    self.connected.set()
                    if failures:
                        log.info("MQTT broker %s:%s reachable again", self.settings.host,
                                 self.settings.port)
                    failures, delay = 0, self.settings.reconnect_min
                    await on_connect()
                    async for message in client.messages:
                        on_message(_inbound(message))
            except aiomqtt.MqttError as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("MQTT broker %s:%s: %s; retrying in %.1f s",
                                self.settings.host, self.settings.port,
                                _reason(exc, tls=self.settings.tls is not None), delay)
            finally:
                self._client = None
                self.connected.clear()
                for task in self._inflight:
                    task.cancel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.reconnect_max)

    async def publish(self, topic: str, payload: bytes | str, *, retain: bool = False,
                      correlation_data: bytes | None = None) -> bool:
        """Publish if connected; returns False when the message was dropped."""
        client = self._client
        if client is None:
            return False
        properties = None
        if self.v5 and correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation_data
        # aiomqtt waits up to its timeout (10 s) for a PUBACK that a dead connection
        # never brings; a poller must not stall on it. Publishes in flight when the
        # connection drops are cancelled by run() and count as dropped.
        task = asyncio.ensure_future(client.publish(topic, payload, qos=self.settings.qos,
                                                    retain=retain, properties=properties))
        self._inflight.add(task)
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            self._inflight.discard(task)
        if task.cancelled():
            return False
        exc = task.exception()
        if isinstance(exc, aiomqtt.MqttError):
            return False
        if exc is not None:
            raise exc
        return True


class _Inbox(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue, bounded (mqtt.inbox_size). paho acknowledges a QoS 1
    message as it arrives, so a flood cannot be pushed back to the broker; past the
    bound a message is dropped and counted here instead of logged one by one."""

    dropped = 0

    def put_nowait(self, item: aiomqtt.Message) -> None:
        if self.full():
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("inbound flood: %d messages dropped unanswered on this "
                            "connection (mqtt.inbox_size %d is full)", self.dropped,
                            self.maxsize)
            return
        super().put_nowait(item)


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the TLS handshake fails: paho leaves the socket of a failed
    handshake (e.g. a certificate that does not verify) to the garbage collector, one
    file descriptor per reconnect attempt until then."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def _inbound(message: aiomqtt.Message) -> Inbound:
    props = message.properties
    response_topic = getattr(props, "ResponseTopic", None) if props else None
    correlation = getattr(props, "CorrelationData", None) if props else None
    expiry = getattr(props, "MessageExpiryInterval", None) if props else None
    payload = message.payload
    if isinstance(payload, str):
        payload = payload.encode()
    elif not isinstance(payload, bytes | bytearray):
        payload = str(payload).encode() if payload is not None else b""
    return Inbound(message.topic.value, bytes(payload), bool(message.retain),
                   response_topic or None, correlation, float(expiry) if expiry else None)


def _reason(exc: aiomqtt.MqttError, *, tls: bool) -> str:
    text = str(exc)
    if "Not authorized" in text or "Bad user name or password" in text or "code:5" in text:
        return f"refused: bad username or password ({text})"
    if tls and "timed out" in text:
        # TLS 1.3: the broker rejects a client certificate only after the handshake,
        # and aiomqtt just sees no CONNACK.
        return f"{text} (over TLS: is the client certificate missing or not trusted?)"
    return text
