"""The MQTT link: the only module that imports aiomqtt (and paho).

`MqttLink.run()` keeps a connection up: it connects with capped back-off, calls
`on_connect` (the service republishes its retained state there: the broker may
have forgotten it), subscribes, and hands every message to `on_message` as a
plain `Inbound`. While disconnected, `publish()` drops messages instead of
letting aiomqtt queue them for later (a stale result delivered after a
reconnect would be a lie); the service republishes state on reconnect.

Two ways out: `post()` sends a message and returns at once (QoS is kept: the
acknowledgement is awaited by nobody); `publish()` also waits for the broker's
acknowledgement, for the few messages that must be out before going on (offline
at shutdown). QoS 0/1 PUBLISH packets go straight to the socket (outbox.py, with
our own window and packet-id table), not through aiomqtt's `publish` (an Event,
a wait_for task and a scan of all pending calls per message) nor paho's (a
Condition, Properties and a scan of all in flight per PUBACK): those were most of
the bridge's CPU at 5,000 messages/s. QoS 2 still goes through paho.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.config.load import MqttSettings
from bridge.core.payload import MAX_PAYLOAD
from bridge.core.ratelimit import LogBudget, held_note
from bridge.mqtt.batching import BatchingSocket
from bridge.mqtt.client_fixes import (
    ClosingSSLSocket,
    acknowledge_at_once,
    raise_if_cancelled,
    read_whole_packets,
    tolerate_bad_publish,
    write_in_loop,
)
from bridge.mqtt.inbox import Inbound, Inbox
from bridge.mqtt.outbox import Outbox, usable_topic
from bridge.mqtt.properties import decode_publish
from bridge.mqtt.properties import install as install_publish_properties

log = logging.getLogger(__name__)
install_publish_properties()

# Announced as the MQTT v5 Maximum Packet Size on CONNECT: the broker then never
# sends the bridge a bigger packet (mosquitto drops it for this client), so memory
# does not follow the largest message anyone publishes. The payload limit plus room
# for a long topic and properties (Response Topic, Correlation Data, User Properties):
# a command slightly over the payload limit still arrives and is answered "too large".
MAX_PACKET = MAX_PAYLOAD + 65536
PUBLISH_TIMEOUT = 10.0  # seconds publish() waits for an acknowledgement


class MqttLink:
    def __init__(self, settings: MqttSettings, *, will_topic: str | None,
                 subscriptions: Sequence[str]) -> None:
        """`will_topic`: where the broker publishes `offline` (retained) if this client
        dies; None for a client that speaks for nobody (`bridge status`)."""
        self.settings = settings
        self.will_topic = will_topic
        self.subscriptions = list(subscriptions)
        self.v5 = settings.protocol == "5"
        self._client: aiomqtt.Client | None = None
        self._inflight: set[asyncio.Future[int]] = set()  # publish() awaiting an ack
        self._outbox = Outbox(settings.qos, self.v5)  # QoS 0/1 PUBLISH, straight out
        self._paho_acks: dict[int, asyncio.Future[int]] = {}  # QoS 2, through paho
        self._receive_maximum: int | None = None  # the broker's, from CONNACK
        # Empty whenever a connection ends: run() hands every message on before it
        # reconnects.
        self._inbox = Inbox(settings.inbox_size)
        self.connected = asyncio.Event()
        self.connects = 0  # successful connections so far
        self._budget = LogBudget(burst=10, period=60.0)

    def _make_client(self) -> aiomqtt.Client:
        s = self.settings
        tls_context = None
        if s.tls is not None:
            tls_context = ssl.create_default_context(cafile=s.tls.ca_file)
            tls_context.sslsocket_class = ClosingSSLSocket
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
            will=aiomqtt.Will(self.will_topic, b"offline", qos=1, retain=True)
            if self.will_topic is not None else None,
            keepalive=s.keepalive,
            tls_context=tls_context,
            tls_insecure=bool(s.tls and s.tls.insecure) if s.tls else None,
            timeout=10,
            properties=self._connect_properties(),
            # Small messages otherwise stall ~40 ms per hop (Nagle + delayed ACK).
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            # The window is ours (_send/_drain, O(1) per PUBACK); paho's own scans all
            # messages in flight on every PUBACK (its _update_inflight).
            max_inflight_messages=0,
        )
        # aiomqtt warns once per publish while more than 10 await their PUBACK: a
        # command burst is normal work here, not worth ~100 log lines.
        client.pending_calls_threshold = 10_000
        tolerate_bad_publish(client._client, self._budget)
        pc = client._client

        # Replaces aiomqtt's callback: nothing here publishes through aiomqtt.
        def on_publish(c: Any, userdata: Any, mid: int, *rest: Any) -> None:
            future = self._paho_acks.pop(mid, None)
            if future is not None and not future.done():
                future.set_result(0)

        aiomqtt_on_connect: Any = pc.on_connect

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any = None) -> None:
            # MQTT 5: the broker says how many QoS >= 1 messages it takes at once.
            announced = getattr(properties, "ReceiveMaximum", None) if properties else None
            self._receive_maximum = int(announced) if announced else None
            aiomqtt_on_connect(c, userdata, flags, reason, properties)

        handle_ack = pc._handle_pubackcomp

        def handle_pubackcomp(cmd: str) -> MQTTErrorCode:
            # A PUBACK that paho's own reading took (one that arrived cut off).
            if cmd == "PUBACK" and self._acknowledged(pc._in_packet["packet"]):
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            result: MQTTErrorCode = handle_ack(cmd)  # type: ignore[arg-type]
            return result

        def on_message(c: Any, userdata: Any, message: paho.MQTTMessage) -> None:
            # QoS 2, and what _publish_taker leaves to paho (.topic raises on a topic
            # that is not UTF-8: client_fixes.tolerate_bad_publish acknowledges and
            # logs such a message).
            self._inbox.put(_inbound(message.topic, message.payload, message.retain,
                                     getattr(message, "properties", None)))

        pc.on_connect = on_connect
        pc.on_publish = on_publish
        pc.on_message = on_message
        pc._handle_pubackcomp = handle_pubackcomp  # type: ignore[method-assign]
        return client

    def _publish_taker(self, pc: paho.Client) -> Callable[[int, bytes], bool]:
        """A QoS 0/1 PUBLISH straight into the inbox (client_fixes.read_whole_packets).
        paho's handler builds an MQTTMessage (with a threading Condition) per message,
        formats two debug log calls, takes its callback lock and walks its topic
        matcher. Decoded as paho decodes it (properties.decode_publish); what does not
        decode cleanly, and QoS 2, is left to paho's handler, which decodes it again
        and reports, drops or acknowledges it as before."""
        v5, put = self.v5, self._inbox.put

        def take(command: int, body: bytes) -> bool:
            if command & 0x04:  # QoS 2, or the invalid 3
                return False
            try:
                topic, mid, properties, payload = decode_publish(command, body, v5)
                message = _inbound(topic.decode("utf-8"), payload, bool(command & 0x01),
                                   properties)
            except (MQTTException, ValueError, IndexError, KeyError):  # paho: malformed
                return False
            put(message)
            if command & 0x02:  # QoS 1
                pc._send_puback(mid)  # client_fixes.acknowledge_at_once's
            return True

        return take

    def _take_puback(self, command: int, body: bytes) -> bool:
        """A PUBACK of ours without paho's packet record and dispatch."""
        return command == PacketTypes.PUBACK << 4 and self._acknowledged(body)

    def _acknowledged(self, body: bytes | bytearray) -> bool:
        """True if this PUBACK body (two bytes of packet id, and the v5 reason code if
        any) acknowledges one of the outbox's messages."""
        return len(body) >= 2 and self._outbox.acknowledged(
            body[0] << 8 | body[1], body[2] if len(body) > 2 else 0)

    def _connect_properties(self) -> Properties | None:
        if not self.v5:
            return None  # MQTT 3.1.1 has no such property: mosquitto's max_packet_size
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.MaximumPacketSize = MAX_PACKET
        return properties

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
                    raise_if_cancelled()
                    # After the handshake (the executor thread paho connects in is done
                    # with the socket): from here on only this event loop uses it.
                    pc = client._client
                    if pc._sock is None:  # closed again right after the CONNACK
                        raise aiomqtt.MqttError("connection lost just after connecting")
                    pc._sock = sock = BatchingSocket(pc._sock, asyncio.get_running_loop())
                    read_whole_packets(pc, sock, {PacketTypes.PUBLISH: self._publish_taker(pc),
                                                  PacketTypes.PUBACK: self._take_puback})
                    acknowledge_at_once(pc, sock)
                    write_in_loop(client)
                    self._outbox.attach(pc, pc._sock, self._receive_maximum)
                    self._client = client
                    for topic in self.subscriptions:
                        await self._subscribe(client, topic)
                    self.connected.set()
                    self.connects += 1
                    if failures:
                        log.info("MQTT broker %s:%s reachable again", self.settings.host,
                                 self.settings.port)
                    failures, delay = 0, self.settings.reconnect_min
                    await on_connect()
                    raise_if_cancelled()
                    await self._take(client, on_message)
            except aiomqtt.MqttError as exc:
                failures += 1
                # Every cause is logged (a message that drops the connection at each
                # reconnect must show up), within a budget so the log stays bounded.
                held = self._budget.take("reconnect")
                if held is not None:
                    log.warning("MQTT broker %s:%s: %s; retrying in %.1f s%s",
                                self.settings.host, self.settings.port,
                                _reason(exc, tls=self.settings.tls is not None), delay,
                                held_note(held))
            finally:
                self._client = None
                self.connected.clear()
                self._outbox.detach()
                for task in self._inflight:
                    task.cancel()
                self._paho_acks.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.reconnect_max)

    async def _take(self, client: aiomqtt.Client, on_message: Callable[[Inbound], None]
                    ) -> None:
        """Hand every message to `on_message` until the connection ends (MqttError);
        what arrived before the end is handed over first, as aiomqtt does."""
        inbox, disconnected = self._inbox, client._disconnected
        while True:
            for _ in range(64):
                message = inbox.take()
                if message is None:
                    break
                on_message(message)
            else:
                # A queue that is never empty never waits: let the handlers (and polls)
                # run between batches.
                await asyncio.sleep(0)
                continue
            if disconnected.done():
                raise aiomqtt.MqttError("Disconnected during message iteration") \
                    from disconnected.exception()
            await inbox.wait(disconnected)

    def post(self, topic: str, payload: bytes | str, *, retain: bool = False,
             correlation_data: bytes | None = None) -> bool:
        """Publish without waiting for the acknowledgement; False when the message was
        dropped (disconnected, or a broker that stopped acknowledging)."""
        return self._send(topic, payload, retain, correlation_data) is not None

    async def publish(self, topic: str, payload: bytes | str, *, retain: bool = False,
                      correlation_data: bytes | None = None) -> bool:
        """Publish and wait for the broker's acknowledgement (QoS >= 1); False when the
        message was dropped or refused, or the connection went down first."""
        sent = self._send(topic, payload, retain, correlation_data, wait=True)
        if not isinstance(sent, asyncio.Future):
            return sent is not None
        # A dead connection never brings the PUBACK: run() cancels what is in flight
        # when it notices, and the timeout bounds the wait meanwhile.
        self._inflight.add(sent)
        try:
            await asyncio.wait({sent}, timeout=PUBLISH_TIMEOUT)
        finally:
            self._inflight.discard(sent)
        if not sent.done():
            sent.cancel()
        return not sent.cancelled() and sent.result() < 0x80  # v5: >= 0x80 is a refusal

    def _send(self, topic: str, payload: bytes | str, retain: bool,
              correlation_data: bytes | None, wait: bool = False
              ) -> asyncio.Future[int] | bool | None:
        """None if dropped, True if sent (or on its way, without `wait`), else the
        future of the acknowledgement's reason code."""
        client = self._client
        if client is None:
            return None
        future: asyncio.Future[int] | None = \
            asyncio.get_running_loop().create_future() if wait else None
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        name = usable_topic(topic) if self._outbox.attached and self.settings.qos < 2 \
            else None
        if name is not None:
            if not self._outbox.send(name, data, retain,
                                     correlation_data if self.v5 else None, future):
                return None
            return future or True
        # QoS 2, or a topic paho should judge (and refuse with its ValueError).
        properties = None
        if self.v5 and correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation_data
        info = client._client.publish(topic, data, self.settings.qos, retain, properties)
        if info.rc != 0:  # not connected (any more): paho did not take it
            return None
        if future is None or info.is_published():
            return True
        self._paho_acks[info.mid] = future
        return future


def _inbound(topic: str, payload: bytes | bytearray, retain: bool, props: Any) -> Inbound:
    found = props.__dict__ if props is not None else {}  # getattr: an AttributeError each
    response_topic = found.get("ResponseTopic")
    expiry = found.get("MessageExpiryInterval")
    return Inbound(topic, bytes(payload), bool(retain), response_topic or None,
                   found.get("CorrelationData"), float(expiry) if expiry else None)


def _reason(exc: aiomqtt.MqttError, *, tls: bool) -> str:
    text = str(exc)
    if "Not authorized" in text or "Bad user name or password" in text or "code:5" in text:
        return f"refused: bad username or password ({text})"
    if tls and "timed out" in text:
        # TLS 1.3: the broker rejects a client certificate only after the handshake,
        # and aiomqtt just sees no CONNACK.
        return f"{text} (over TLS: is the client certificate missing or not trusted?)"
    return text
