"""Security against a real mosquitto: TLS (CA, server and client certificates made here
with the openssl CLI; host name verification on by default), user/password refusal
without crash loops or leaked secrets, and the shipped mosquitto.conf + ACL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.app import Bridge
from bridge.config.load import validate_config
from bridge.modbus.simulator import SimulatedLine
from tests.broker import REPO, Mosquitto, Probe, broker_config, free_port, probe
from tests.conftest import wait_until
from tests.e2e import make_config

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("openssl", "mosquitto", "mosquitto_passwd")),
    reason="needs openssl, mosquitto and mosquitto_passwd")

READ = {"op": "read_holding_registers", "address": 0, "count": 2}


def run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=30)


# -- certificates ----------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    """A throw-away CA in `dir`; `issue` signs EC certificates with it."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @classmethod
    def create(cls, directory: Path) -> Pki:
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", directory / "ca.key", "-out", directory / "ca.crt",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return cls(directory)

    def issue(self, name: str, usage: str, san: str | None = None) -> tuple[Path, Path]:
        """(certificate, key) for `name`; usage serverAuth or clientAuth."""
        key, csr, crt = (self.dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        ext = self.dir / f"{name}.ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\n"
                       f"extendedKeyUsage={usage}\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                       + (f"subjectAltName={san}\n" if san else ""))
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
            "-keyout", key, "-out", csr)
        serial = str(secrets.randbelow(2**63) + 1)
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.dir / "ca.key",
            "-set_serial", serial, "-days", "2", "-extfile", ext, "-out", crt)
        return crt, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


def client_context(pki: Pki, cert: tuple[Path, Path] | None = None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.check_hostname = check_hostname
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


@contextlib.contextmanager
def broker(directory: Path, conf: str, port: int) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(directory, port=port, conf=conf)
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


def tls_broker_conf(port: int, pki: Pki, server: tuple[Path, Path],
                    require_certificate: bool) -> str:
    return (f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"cafile {pki.ca}\ncertfile {server[0]}\nkeyfile {server[1]}\n"
            f"require_certificate {'true' if require_certificate else 'false'}\n")


# -- the bridge ------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def bridge_task(config: dict[str, Any]) -> AsyncIterator[tuple[Bridge, asyncio.Task[None]]]:
    """The bridge in-process, and its task (to check it has not died)."""
    bridge = Bridge(validate_config(config))
    task = asyncio.create_task(bridge.run(install_signal_handlers=False), name="bridge")
    try:
        yield bridge, task
    finally:
        bridge.stopping.set()
        await asyncio.wait_for(task, 10)


async def connected(bridge: Bridge, timeout: float = 10.0) -> None:
    await asyncio.wait_for(bridge.link.connected.wait(), timeout)


async def never_connects(bridge: Bridge, task: asyncio.Task[None], window: float) -> None:
    """Over `window` seconds the link stays down and the bridge stays alive."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(bridge.link.connected.wait(), window)
    assert not bridge.link.connected.is_set(), "the bridge connected"
    assert not task.done(), f"the bridge died: {task}"


def warnings_of(caplog: pytest.LogCaptureFixture, logger: str = "bridge.mqtt.link") -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.levelno == logging.WARNING]


# -- 1. TLS ----------------------------------------------------------------------------

async def test_tls_with_client_certificate(tmp_path: Path, pki: Pki, line: SimulatedLine,
                                           caplog: pytest.LogCaptureFixture) -> None:
    server = pki.issue("server", "serverAuth", "IP:127.0.0.1,DNS:localhost")
    client = pki.issue("bridge-client", "clientAuth")
    port = free_port()
    with broker(tmp_path, tls_broker_conf(port, pki, server, require_certificate=True), port):
        tls = {"ca_file": str(pki.ca), "cert_file": str(client[0]),
               "key_file": str(client[1])}
        config = make_config(port, line.path, mqtt={"tls": tls})
        async with bridge_task(config) as (bridge, task), \
                probe(port, tls_context=client_context(pki, client)) as p:
            await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
            response = await p.request("meter1", dict(READ))
            assert response["ok"] is True, response
            assert response["registers"] == [100, 101]
            assert not task.done()

        # Same broker, no client certificate: the broker ends the TLS session. (Under
        # TLS 1.3 that happens after the client's handshake, so paho logs the alert at
        # once while aiomqtt only gives up on the missing CONNACK after its 10 s timeout.)
        del tls["cert_file"], tls["key_file"]
        caplog.clear()
        async with bridge_task(make_config(port, line.path, mqtt={"tls": tls})) as (bridge,
                                                                                    task):
            await wait_until(lambda: "certificate required" in caplog.text.lower(),
                             what="a log line naming the missing client certificate")
            await never_connects(bridge, task, 1.0)


async def test_tls_hostname_is_verified_unless_insecure(
        tmp_path: Path, pki: Pki, line: SimulatedLine,
        caplog: pytest.LogCaptureFixture) -> None:
    # Signed by the trusted CA, but issued for another host.
    server = pki.issue("wrong-host", "serverAuth", "DNS:wrong.example")
    port = free_port()
    with broker(tmp_path, tls_broker_conf(port, pki, server, require_certificate=False), port):
        tls: dict[str, Any] = {"ca_file": str(pki.ca)}
        caplog.set_level(logging.INFO)
        async with bridge_task(make_config(port, line.path, mqtt={"tls": tls})) as (bridge,
                                                                                    task):
            await never_connects(bridge, task, 2.0)
        warnings = warnings_of(caplog)
        assert warnings, "no warning about the failed TLS handshake"
        assert "certificate verify failed" in warnings[0], warnings
        assert "mismatch" in warnings[0] and "127.0.0.1" in warnings[0], warnings

        tls["insecure"] = True
        insecure_client = client_context(pki, check_hostname=False)
        async with bridge_task(make_config(port, line.path, mqtt={"tls": tls})) as (bridge,
                                                                                    task):
            await connected(bridge)
            async with probe(port, tls_context=insecure_client) as p:
                await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
                response = await p.request("meter1", dict(READ))
                assert response["ok"] is True, response


# -- 2. user and password --------------------------------------------------------------

def password_file(path: Path, users: dict[str, str]) -> Path:
    for i, (user, password) in enumerate(users.items()):
        run("mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), path, user, password)
    return path


def connection_attempts(log: Path, port: int) -> int:
    text = log.read_text() if log.exists() else ""
    return sum(1 for line in text.splitlines()
               if "New connection from" in line and f"on port {port}" in line)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_wrong_password_is_refused_without_crash_loop_or_leak(
        tmp_path: Path, line: SimulatedLine, caplog: pytest.LogCaptureFixture,
        protocol: str) -> None:
    right, wrong = "Right-Pa55-4711", "Wr0ng-Pa55-0815"
    passwd = password_file(tmp_path / "passwd", {"bridge": right})
    log = tmp_path / "mosquitto.log"
    port = free_port()
    conf = (f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
            f"persistence false\nlog_dest file {log}\nlog_type all\n")
    caplog.set_level(logging.DEBUG)
    window = 3.0
    with broker(tmp_path, conf, port):
        mqtt = {"username": "bridge", "password": wrong, "protocol": protocol,
                "reconnect_min": 0.1, "reconnect_max": 0.8}
        async with bridge_task(make_config(port, line.path, mqtt=mqtt)) as (bridge, task):
            before = connection_attempts(log, port)
            await never_connects(bridge, task, window)
            # A crash loop would reconnect every few ms; back-off 0.1, 0.2, 0.4, 0.8, 0.8..
            # gives about 6 attempts in 3 s.
            attempts = connection_attempts(log, port) - before
            assert 3 <= attempts <= 10, f"{attempts} connection attempts in {window} s"
        refusals = [w for w in warnings_of(caplog) if "bad username or password" in w]
        # Every attempt is logged (within the link's log budget of 10 a minute).
        assert 3 <= len(refusals) <= 10, warnings_of(caplog)
        assert "not authori" in refusals[0].lower(), refusals
        records = list(caplog.records)
        assert records
        for record in records:
            assert wrong not in record.getMessage(), record
            assert wrong not in repr(record.args), record
        assert wrong not in caplog.text

        mqtt["password"] = right
        caplog.clear()
        async with bridge_task(make_config(port, line.path, mqtt=mqtt)) as (bridge, task), \
                probe(port, username="bridge", password=right) as p:
            await connected(bridge)
            await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
            response = await p.request("meter1", dict(READ))
            assert response["ok"] is True, response
        assert right not in caplog.text


# -- 3. the shipped mosquitto.conf and ACL ---------------------------------------------

@pytest.fixture
def shipped_broker(tmp_path: Path) -> Iterator[int]:
    """The repo's mosquitto.conf on a free port, with known users (none ship)."""
    assert not (REPO / "deploy" / "mosquitto.passwd").exists(), "credentials shipped"
    passwd = password_file(tmp_path / "passwd", {"bridge": "bridge-pw",
                                                 "homeassistant": "ha-pw", "nodered": "nr-pw"})
    auth = free_port()
    text = broker_config((REPO / "mosquitto.conf").read_text(), {1883: auth})
    assert f"acl_file {REPO / 'deploy' / 'mosquitto.acl'}" in text
    assert f"listener {auth} 127.0.0.1" in text, "plaintext listener not on loopback"
    lines = [f"password_file {passwd}" if line.startswith("password_file ") else line
             for line in text.splitlines()]
    assert f"password_file {passwd}" in lines
    with broker(tmp_path, "\n".join(lines), auth):
        yield auth


async def refused(port: int, username: str | None = None,
                  password: str | None = None) -> aiomqtt.MqttError:
    with pytest.raises(aiomqtt.MqttError) as failure:
        async with probe(port, username=username, password=password):
            pass
    return failure.value


def homeassistant(port: int) -> contextlib.AbstractAsyncContextManager[Probe]:
    return probe(port, username="homeassistant", password="ha-pw")


async def test_shipped_config_acl(shipped_broker: int, line: SimulatedLine) -> None:
    auth = shipped_broker
    await wait_until(lambda: _listening(auth), what="the authenticated listener")
    for username, password in ((None, None), ("mallory", "x"), ("homeassistant", "wrong")):
        error = await refused(auth, username, password)
        assert isinstance(error, aiomqtt.MqttCodeError), error
        code = getattr(error.rc, "value", error.rc)
        assert code in (134, 135), error  # Bad user name or password / Not authorized

    mqtt = {"username": "bridge", "password": "bridge-pw"}
    async with bridge_task(make_config(auth, line.path, mqtt=mqtt)) as (bridge, task), \
            homeassistant(auth) as home:
        # Home Assistant reads state and availability, sends commands, gets responses.
        await home.expect("modbus/meter1/availability", lambda m: m.text == "online")
        assert (await home.expect("modbus/meter1", lambda m: "h0" in m.json())).json()["h0"] \
            == 100
        response = await home.request("meter1", dict(READ))
        assert response["ok"] is True and response["registers"] == [100, 101], response
        # ... also as MQTT v5 request/response in its own reply subtree (replies/%u/#).
        mark = home.mark()
        await home.publish("modbus/meter1/request", '{"op": "read_coils", "address": 0, '
                           '"count": 1}', response_topic="replies/homeassistant/1",
                           correlation=b"c-1")
        reply = await home.expect("replies/homeassistant/1", after=mark)
        assert reply.json()["ok"] is True and reply.properties.CorrelationData == b"c-1"

        # It cannot spoof state: its publishes under modbus/meter1 reach nobody (it is
        # subscribed to modbus/# itself). A command sent after the spoof arrives, so the
        # spoof would have arrived before it.
        mark = home.mark()
        await home.publish("modbus/meter1/availability", "spoofed", retain=True)
        await home.publish("modbus/meter1", '{"h0": 31337, "spoofed": true}')
        await home.publish("modbus/bridge/state", "spoofed")
        await home.request("meter1", {"id": "after-spoof", **READ})
        await asyncio.sleep(0.3)  # a bounded window for a late (wrongly) delivered spoof
        assert [m for m in home.seen[mark:] if b"spoofed" in m.payload] == []

        # Another user reads replies in its own subtree only, not Home Assistant's.
        async with probe(auth, username="nodered", password="nr-pw",
                         subscribe="replies/#") as nodered:
            mark = home.mark()
            await home.publish("modbus/meter1/request", '{"id": "c-2", "op": "read_coils", '
                               '"address": 0, "count": 1}',
                               response_topic="replies/homeassistant/2")
            await home.expect("replies/homeassistant/2", after=mark)
            await home.request("meter1", {"id": "after-reply", **READ})
            await asyncio.sleep(0.3)  # a bounded window for a wrongly delivered reply
            assert nodered.seen == []

        # Nobody takes over the bridge's client id: the broker uses the user name.
        connects = bridge.link.connects
        async with probe(auth, username="nodered", password="nr-pw",
                         identifier="bridge-under-test", subscribe="nothing/#"):
            pass
        assert (await home.request("meter1", {"id": "after-takeover", **READ}))["ok"]
        assert bridge.link.connects == connects, "the bridge was disconnected"
        assert not task.done()
    async with homeassistant(auth) as late:
        assert (await late.expect("modbus/meter1/availability")).text == "offline"


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@pytest.mark.parametrize(("error", "tls", "says"), [
    ("[code:135] Not authorized", False, "refused: bad username or password"),
    ("[code:134] Bad user name or password", True, "refused: bad username or password"),
    ("Operation timed out", True, "is the client certificate missing or not trusted?"),
    ("Operation timed out", False, "Operation timed out"),
])
def test_connection_failures_are_explained(error, tls, says):
    import aiomqtt

    from bridge.mqtt.link import _reason
    assert says in _reason(aiomqtt.MqttError(error), tls=tls)
    assert "not trusted" not in _reason(aiomqtt.MqttError(error), tls=False)
