"""Several bridges on one broker (mqtt-api.md, "Several bridges on one broker"): bridge
processes, each with its own simulated RS-485 line, on one mosquitto; and `bridge
status` reading what they report."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config.load import validate_config
from bridge.modbus.simulator import SimulatedLine, SimUnit
from tests.broker import probe
from tests.conftest import BAUD, wait_until

BRIDGE = [sys.executable, "-m", "bridge"]


def unit(unit_id: int, marker: int) -> SimUnit:
    """Holding 0 tells which line answered (marker), holding 1 the unit."""
    return SimUnit(unit_id, holding={0: marker, 1: unit_id})


def bridge_config(broker_port: int, line: str, instance: str | None,
                  devices: list[tuple[str, int]], **mqtt: Any) -> dict[str, Any]:
    serial = {"port": line, "baudrate": BAUD, "parity": "N"}
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "reconnect_min": 0.1,
                 "reconnect_max": 1.0, "client_id": f"bridge-{instance}", **mqtt},
        "bridge": {"instance": instance},
        "homeassistant": {"discovery": True},
        "devices": [{"id": dev_id, "serial": serial, "unit": unit_id, "timeout": 1.0,
                     "poll_interval": 0.5,
                     "datapoints": [{"name": "marker", "table": "holding", "address": 0,
                                     "type": "uint16"},
                                    {"name": "unit", "table": "holding", "address": 1,
                                     "type": "uint16"}]}
                    for dev_id, unit_id in devices],
    }


class BridgeProcess:
    def __init__(self, tmp: Path, name: str, config: dict[str, Any]) -> None:
        self.path = tmp / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.proc: asyncio.subprocess.Process | None = None
        self.log = ""

    async def start(self) -> BridgeProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *BRIDGE, "run", "--config", str(self.path), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        return self

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = await asyncio.wait_for(self.proc.communicate(), 10)
        except TimeoutError:
            self.proc.kill()
            _, err = await self.proc.communicate()
        self.log = err.decode(errors="replace")
        assert self.proc.returncode is not None
        return self.proc.returncode


@contextlib.asynccontextmanager
async def bridges(*procs: BridgeProcess) -> AsyncIterator[list[BridgeProcess]]:
    try:
        for proc in procs:
            await proc.start()
        yield list(procs)
    finally:
        for proc in procs:
            if proc.proc is not None and proc.proc.returncode is None:
                await proc.stop()


async def status(config_path: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *BRIDGE, "status", "--config", str(config_path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def lines() -> AsyncIterator[tuple[SimulatedLine, SimulatedLine]]:
    async with SimulatedLine([unit(1, 1001), unit(2, 1002)], baudrate=BAUD,
                             name="line-a") as a, \
            SimulatedLine([unit(1, 2001), unit(3, 2003)], baudrate=BAUD, name="line-b") as b:
        yield a, b


async def online(p: Any, *devices: str, after: int = 0) -> None:
    for device in devices:
        await p.expect(f"modbus/{device}/availability", lambda m: m.text == "online",
                       timeout=30, after=after)


async def test_two_bridges_on_one_broker(tmp_path, mosquitto, lines):
    line_a, line_b = lines
    hall1 = BridgeProcess(tmp_path, "hall1", bridge_config(
        mosquitto.port, line_a.path, "hall1", [("a1", 1), ("a2", 2)]))
    hall2 = BridgeProcess(tmp_path, "hall2", bridge_config(
        mosquitto.port, line_b.path, "hall2", [("b1", 1), ("b3", 3)]))
    async with bridges(hall1, hall2), probe(mosquitto.port) as p:
        # both serve, each its own line; bridge topics per instance, device topics flat
        await online(p, "a1", "a2", "b1", "b3")
        for instance, devices in (("hall1", ["a1", "a2"]), ("hall2", ["b1", "b3"])):
            assert (await p.expect(f"modbus/bridge/{instance}/state")).text == "online"
            info = (await p.expect(f"modbus/bridge/{instance}/info")).json()
            assert info["instance"] == instance and info["devices"] == devices
            assert info["refused"] == {}
        assert not [m for m in p.seen if m.topic in ("modbus/bridge/state",
                                                     "modbus/bridge/info")]
        # Home Assistant: both instances' entities, no unique_id published twice
        await p.expect("homeassistant/+/+/+/config",
                       lambda m: m.payload and m.json()["unique_id"].startswith("hall2_"))
        topics_of: dict[str, set[str]] = {}
        for m in p.seen:
            if m.topic.startswith("homeassistant/") and m.topic.endswith("/config") \
                    and m.payload:
                topics_of.setdefault(m.json()["unique_id"], set()).add(m.topic)
        assert {i.split("_")[0] for i in topics_of} == {"hall1", "hall2"}
        assert all(len(t) == 1 for t in topics_of.values()), topics_of
        # commands reach the right bridge and the right line (unit 1 on both lines)
        assert (await p.request("a1", {"op": "read_holding_registers", "address": 0,
                                       "count": 2}))["registers"] == [1001, 1]
        assert (await p.request("b1", {"op": "read_holding_registers", "address": 0,
                                       "count": 2}))["registers"] == [2001, 1]
        assert (await p.expect("modbus/b3", lambda m: "marker" in m.json())).json()[
            "marker"] == 2003

        code, out, err = await status(hall1.path)
        assert code == 0, out + err
        table = out.splitlines()
        assert table[0].split() == ["INSTANCE", "STATE", "STARTED_AT", "DEVICES"]
        assert [row.split()[:2] for row in table[1:3]] == [["hall1", "online"],
                                                           ["hall2", "online"]]
        rows = {row.split()[0]: row.split() for row in table if row.split()[:1] in
                (["a1"], ["a2"], ["b1"], ["b3"])}
        assert {d: r[1:3] for d, r in rows.items()} == {
            "a1": ["hall1", "online"], "a2": ["hall1", "online"],
            "b1": ["hall2", "online"], "b3": ["hall2", "online"]}
        assert all(r[3].endswith("Z") for r in rows.values())  # last_seen

        # stopping one bridge leaves the other's devices online and polled
        assert await hall2.stop() == 0
        await p.expect("modbus/b1/availability", lambda m: m.text == "offline", timeout=10)
        await p.expect("modbus/bridge/hall2/state", lambda m: m.text == "offline")
        mark = p.mark()
        await p.expect("modbus/a1", lambda m: m.json()["marker"] == 1001, after=mark)
        await p.expect("modbus/a2", lambda m: m.json()["marker"] == 1002, after=mark)
        assert not [m for m in p.seen[mark:] if m.topic == "modbus/a1/availability"]
        assert (await p.request("a2", {"op": "read", "datapoints": ["unit"]}))[
            "values"] == {"unit": 2}

        code, out, err = await status(hall1.path)
        assert code == 1
        assert "2 of 4 devices not online: b1, b3" in err
    assert " ERROR " not in hall1.log and "Traceback" not in hall1.log


async def test_a_duplicate_device_id_is_refused_naming_the_instance(tmp_path, mosquitto,
                                                                     lines):
    line_a, line_b = lines
    hall1 = BridgeProcess(tmp_path, "hall1", bridge_config(
        mosquitto.port, line_a.path, "hall1", [("a1", 1), ("a2", 2)]))
    # hall2 deliberately reuses the id a1 (unit 1 on its own line answers 2001)
    hall2 = BridgeProcess(tmp_path, "hall2", bridge_config(
        mosquitto.port, line_b.path, "hall2", [("a1", 1), ("b3", 3)]))
    async with bridges(hall1), probe(mosquitto.port) as p:
        await online(p, "a1", "a2")
        async with bridges(hall2):
            info = (await p.expect("modbus/bridge/hall2/info", timeout=30)).json()
            assert info["devices"] == ["b3"]
            assert info["refused"] == {"a1": "hall1"}
            await online(p, "b3")
            mark = p.mark()
            # a1 is still hall1's: its state comes from line A only, one answer per command
            for _ in range(3):
                await p.expect("modbus/a1", after=p.mark())
            assert {m.json()["marker"] for m in p.seen[mark:] if m.topic == "modbus/a1"} \
                == {1001}
            response = await p.request("a1", {"op": "read_holding_registers", "address": 0,
                                              "count": 1})
            assert response["registers"] == [1001]
            answers = [m for m in p.seen[mark:] if m.topic == "modbus/a1/response"]
            assert len(answers) == 1
            assert line_b.unit(1).requests == 0  # hall2 never touched its unit 1
            await hall2.stop()
        assert ("device 'a1' is not served by this bridge: instance 'hall1' already serves"
                " a device with that id") in hall2.log
        # hall2 going away did not take a1 offline
        assert not [m for m in p.seen[mark:]
                    if m.topic == "modbus/a1/availability" and m.text == "offline"]


def test_home_assistant_ids_do_not_collide_across_instances(tmp_path):
    from bridge.features.homeassistant import Discovery
    from bridge.mqtt.topics import Topics
    configs = [validate_config(bridge_config(1883, "/dev/ttyUSB0", name, [("dev", 1)]))
               for name in ("hall1", "hall2")]
    ids = [{e.unique_id for e in Discovery(c, Topics("modbus", c.bridge.instance)).entities()}
           for c in configs]
    assert ids[0] and ids[1] and not ids[0] & ids[1]


async def test_a_bridge_stopped_while_it_connects_still_stops(mosquitto, lines):
    """Stop requested as the broker's CONNACK arrives: Python 3.11's wait_for inside
    aiomqtt could swallow that cancel, and the link ran on after shutdown."""
    from bridge.app import Bridge
    line_a, _ = lines
    config = validate_config(bridge_config(mosquitto.port, line_a.path, None, [("a1", 1)]))
    for attempt in range(12):
        bridge = Bridge(config)
        task = asyncio.create_task(bridge.run(install_signal_handlers=False))
        for _ in range(attempt % 4):
            await asyncio.sleep(0)
        if attempt >= 8:
            await asyncio.sleep(0.002 * attempt)
        bridge.stopping.set()
        done, _ = await asyncio.wait({task}, timeout=8)
        assert done, f"attempt {attempt}: the bridge did not stop"
        assert task.exception() is None


async def test_two_bridges_on_the_shipped_broker_config_and_acl(tmp_path, lines, caplog):
    """As docs/scaling.md says: the shipped mosquitto.conf makes the user name the client
    id, so each bridge has its own user, with the ACL's bridge block copied for it. The
    bridges then read each other's claims (no wait for the sync marker) and refuse a
    duplicate id."""
    import logging

    from bridge.app import Bridge
    from tests.broker import REPO, broker_config, free_port
    from tests.integration.test_security import broker, password_file

    caplog.set_level(logging.INFO, logger="bridge")
    line_a, line_b = lines
    acl = (REPO / "deploy" / "mosquitto.acl").read_text()
    block = acl[acl.index("user bridge\n"):acl.index("\n\n", acl.index("user bridge\n"))]
    (tmp_path / "acl").write_text(acl + "\n" + block.replace("user bridge\n",
                                                             "user bridge-hall2\n") + "\n")
    passwd = password_file(tmp_path / "passwd", {"bridge": "b1-pw", "bridge-hall2": "b2-pw"})
    port = free_port()
    text = broker_config((REPO / "mosquitto.conf").read_text(), {1883: port})
    text = "\n".join(f"password_file {passwd}" if row.startswith("password_file ") else
                     f"acl_file {tmp_path / 'acl'}" if row.startswith("acl_file ") else row
                     for row in text.splitlines())
    one = validate_config(bridge_config(port, line_a.path, "hall1", [("a1", 1), ("a2", 2)],
                                        username="bridge", password="b1-pw"))
    two = validate_config(bridge_config(port, line_b.path, "hall2", [("a1", 1), ("b3", 3)],
                                        username="bridge-hall2", password="b2-pw"))
    with broker(tmp_path, text, port):
        first = Bridge(one)
        run_first = asyncio.create_task(first.run(install_signal_handlers=False))
        second: Bridge | None = None
        run_second: asyncio.Task[None] | None = None
        try:
            await asyncio.wait_for(first.instances.settled.wait(), 10)
            await wait_until(lambda: first.runners["a1"].online is True, 10, "a1 online")
            second = Bridge(two)
            run_second = asyncio.create_task(second.run(install_signal_handlers=False))
            await asyncio.wait_for(second.instances.settled.wait(), 10)
            assert second.claims.refused == {"a1": "hall1"}
            await wait_until(lambda: second.runners["b3"].online is True, 10, "b3 online")
            assert second.runners["a1"].online is None  # never served
        finally:
            for bridge, task in ((second, run_second), (first, run_first)):
                if bridge is not None and task is not None:
                    bridge.stopping.set()
                    await asyncio.wait_for(task, 10)
    messages = [r.getMessage() for r in caplog.records]
    # the sync marker came back through the ACL (else: "did not receive ... back")
    assert not [m for m in messages if "did not receive" in m], messages
    assert any("instance 'hall1' already serves" in m for m in messages)
