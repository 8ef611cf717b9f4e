"""Test-side MQTT: a real mosquitto on a free loopback port, and a probe client that
waits for messages with bounded timeouts (tests may use aiomqtt directly; the bridge
package keeps it in bridge/mqtt.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Started as root, mosquitto drops to the `mosquitto` user, which cannot read files
# (certificates, password files) under pytest's private tmp directories.
KEEP_USER = "user root\n" if os.geteuid() == 0 else ""


class Mosquitto:
    """A mosquitto process on 127.0.0.1:<port> with a generated config.

    `conf`, if given, replaces the generated config entirely (its listeners must
    include `port`, which start() waits for); KEEP_USER and `extra` are appended."""

    def __init__(self, directory: Path, extra: str = "", port: int | None = None,
                 conf: str | None = None) -> None:
        if shutil.which("mosquitto") is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.dir = directory
        self.port = port or free_port()
        self.extra = extra
        self.conf = conf
        self.proc: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        if self.conf is not None:
            return self.conf.rstrip("\n") + "\n" + KEEP_USER + self.extra
        return (f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                "set_tcp_nodelay true\npersistence false\n"
                "max_queued_messages 100000\nmax_inflight_messages 0\n" + self.extra)

    def start(self) -> None:
        conf = self.dir / f"mosquitto-{self.port}.conf"
        conf.write_text(self.config_text())
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=self.dir)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool
    properties: Any = None

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        import json
        return json.loads(self.payload)


@dataclass
class Probe:
    """A test client: records everything it receives; `expect` waits for a match."""

    client: aiomqtt.Client
    seen: list[Seen] = field(default_factory=list)
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def expect(self, topic: str, where: Callable[[Seen], bool] = lambda m: True,
                     timeout: float = 10.0, after: int = 0) -> Seen:
        """The first message on `topic` (index >= after) matching `where`."""
        end = asyncio.get_running_loop().time() + timeout
        while True:
            for m in self.seen[after:]:
                if _match(topic, m.topic) and where(m):
                    return m
            remaining = end - asyncio.get_running_loop().time()
            if remaining <= 0:
                got = [(m.topic, m.payload[:200]) for m in self.seen[after:] if
                       _match(topic, m.topic)]
                raise AssertionError(f"no matching message on {topic} within {timeout} s; "
                                     f"got {got[-5:]}")
            await self.wait_new(remaining)

    async def wait_new(self, timeout: float) -> None:
        """Until the next message arrives, or `timeout` seconds (no error)."""
        self._event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)

    def mark(self) -> int:
        return len(self.seen)

    async def publish(self, topic: str, payload: bytes | str, *, retain: bool = False,
                      qos: int = 1, response_topic: str | None = None,
                      correlation: bytes | None = None, expiry: int | None = None) -> None:
        props = None
        if response_topic or correlation or expiry is not None:
            props = Properties(PacketTypes.PUBLISH)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation:
                props.CorrelationData = correlation
            if expiry is not None:
                props.MessageExpiryInterval = expiry
        await self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    async def request(self, device: str, body: Any, base: str = "modbus",
                      timeout: float = 10.0) -> Any:
        """Send a command on <base>/<device>/request and return the parsed response."""
        import json
        import uuid
        rid = body.get("id") if isinstance(body, dict) else None
        if isinstance(body, dict) and "id" not in body:
            rid = body["id"] = uuid.uuid4().hex[:8]
        mark = self.mark()
        payload = body if isinstance(body, bytes | str) else json.dumps(body)
        await self.publish(f"{base}/{device}/request", payload)
        m = await self.expect(f"{base}/{device}/response",
                              lambda m: rid is None or m.json().get("id") == rid,
                              timeout=timeout, after=mark)
        return m.json()


def _match(pattern: str, topic: str) -> bool:
    return bool(aiomqtt.Topic(topic).matches(pattern))


@contextlib.asynccontextmanager
async def probe(port: int, subscribe: str = "#", protocol: int = 5,
                **kw: Any) -> AsyncIterator[Probe]:
    version = aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311
    # Without TCP_NODELAY every request waits ~40 ms for Nagle + delayed ACK.
    kw.setdefault("socket_options", [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    async with aiomqtt.Client("127.0.0.1", port, protocol=version, **kw) as client:
        p = Probe(client)

        async def pump() -> None:
            async for message in client.messages:
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload).encode()
                p.seen.append(Seen(message.topic.value, data, bool(message.retain),
                                   message.properties))
                p._event.set()

        task = asyncio.create_task(pump())
        await client.subscribe(subscribe, qos=1)
        try:
            yield p
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


REPO = Path(__file__).resolve().parent.parent


def broker_config(conf: str, ports: dict[int, int]) -> str:
    """The repo's mosquitto.conf with listener ports moved and its files made absolute,
    to run the shipped config and ACL on free ports."""
    lines = []
    for line in conf.splitlines():
        words = line.split()
        if words[:1] == ["listener"] and len(words) > 1 and int(words[1]) in ports:
            words[1] = str(ports[int(words[1])])
            line = " ".join(words)
        elif words[:1] in (["password_file"], ["acl_file"]):
            line = f"{words[0]} {REPO / words[1]}"
        lines.append(line)
    return "\n".join(lines) + "\n"
