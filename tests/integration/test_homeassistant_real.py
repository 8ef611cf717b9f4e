"""Against a real Home Assistant: the demo config's devices, on the simulated line and
TCP unit, discovered by HA's own MQTT integration with no YAML on the HA side.

HA (pinned in tests/real_ha/requirements.txt, installed by `make ha-venv`, which
`make test` runs) is started once for the module on a free loopback port, onboarded
through its HTTP API, given the MQTT integration through a config flow, and read
through its websocket API: entity and device registries, states, service calls.
A missing or failed HA install fails here, loudly: it is never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bridge.app import Bridge
from bridge.config.load import Config, HomeAssistantSettings
from bridge.core.ha_classes import Component
from bridge.demo.run import demo_config, demo_units
from bridge.features.homeassistant import Discovery, Entity
from bridge.modbus.simulator import SimBus, SimulatedLine, SimUnit, serve_tcp, tcp_server_port
from tests.broker import REPO, Mosquitto, free_port
from tests.conftest import wait_until
from tests.e2e import running_bridge

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

REQUIREMENTS = REPO / "tests" / "real_ha" / "requirements.txt"
VERSION = next(line.split("==", 1)[1] for line in REQUIREMENTS.read_text().splitlines()
               if line.startswith("homeassistant=="))
VENV = Path(os.environ.get("BRIDGE_HA_VENV")
            or Path.home() / ".cache" / "modbus-bridge" / f"ha-{VERSION}")
STARTUP = 180.0  # seconds: ~10 s warm, much more on a loaded machine's first start
# The demo config with discovery on: 13 datapoints, plus the bridge's connectivity
# and five health sensors.
DEMO_ENTITIES = 19


def ha_python() -> Path:
    """The venv's python, or a loud failure saying why there is none."""
    marker = VENV / "requirements.txt"
    if marker.exists() and marker.read_bytes() == REQUIREMENTS.read_bytes():
        return VENV / "bin" / "python"
    failed = Path(f"{VENV}.failed")
    why = failed.read_text() if failed.exists() else \
        "not installed: run `make ha-venv` (`make test` does it first)"
    pytest.fail(f"Home Assistant {VERSION} in {VENV}: {why}", pytrace=False)


CONFIGURATION = """\
homeassistant:
  name: Bridge test
  latitude: 47.0
  longitude: 8.0
  elevation: 400
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: CH
http:
  server_host: 127.0.0.1
  server_port: {port}
onboarding:
config:
logger:
  default: warning
"""


class HomeAssistant:
    """One HA process and a client for its HTTP and websocket APIs."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.headers: dict[str, str] = {}
        self._ids = itertools.count(1)

    def log_tail(self, lines: int = 40) -> str:
        log = self.dir / "ha.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) \
            if log.exists() else "(no log)"

    async def start(self) -> None:
        python = ha_python()
        config = self.dir / "config"
        config.mkdir()
        (config / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        with (self.dir / "ha.log").open("wb") as log:
            # --skip-pip: everything HA needs is in its venv; nothing is fetched now.
            self.proc = subprocess.Popen([str(python), "-m", "homeassistant", "-c",
                                          str(config), "--skip-pip"],
                                         stdout=log, stderr=subprocess.STDOUT)
        self.session = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        end = loop.time() + STARTUP
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"Home Assistant exited:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.get(self.url + "/api/onboarding",
                                            timeout=aiohttp.ClientTimeout(total=5)) as r:
                    if r.status == 200:
                        return
            if loop.time() > end:
                raise AssertionError(f"Home Assistant did not answer within {STARTUP} s:\n"
                                     f"{self.log_tail()}")
            await asyncio.sleep(0.5)

    async def onboard(self) -> None:
        """Create the owner user and take a token, as the frontend does."""
        assert self.session is not None
        client_id = self.url + "/"
        async with self.session.post(self.url + "/api/onboarding/users", json={
                "client_id": client_id, "name": "Test", "username": "test",
                "password": "test-password-1", "language": "en"}) as r:
            assert r.status == 200, await r.text()
            code = (await r.json())["auth_code"]
        async with self.session.post(self.url + "/auth/token", data={
                "grant_type": "authorization_code", "code": code,
                "client_id": client_id}) as r:
            assert r.status == 200, await r.text()
            token = (await r.json())["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ws = await self.session.ws_connect(self.url + "/api/websocket")
        assert (await self.ws.receive_json())["type"] == "auth_required"
        await self.ws.send_json({"type": "auth", "access_token": token})
        assert (await self.ws.receive_json())["type"] == "auth_ok"

    async def add_mqtt(self, broker_port: int) -> None:
        """The MQTT integration through its config flow (discovery on, prefix default)."""
        assert self.session is not None
        flows = self.url + "/api/config/config_entries/flow"
        async with self.session.post(flows, json={"handler": "mqtt"},
                                     headers=self.headers) as r:
            form = await r.json()
            assert form["type"] == "form" and form["step_id"] == "broker", form
        async with self.session.post(f"{flows}/{form['flow_id']}", headers=self.headers,
                                     json={"broker": "127.0.0.1", "port": broker_port}) as r:
            done = await r.json()
            assert done["type"] == "create_entry", done

    async def call(self, kind: str, **fields: Any) -> Any:
        """One websocket command; its result (events in between are skipped)."""
        assert self.ws is not None
        message_id = next(self._ids)
        await self.ws.send_json({"id": message_id, "type": kind, **fields})
        async with asyncio.timeout(30):
            while True:
                answer = await self.ws.receive_json()
                if answer.get("id") == message_id and answer["type"] == "result":
                    assert answer["success"], answer
                    return answer["result"]

    async def entities(self) -> dict[str, dict[str, Any]]:
        """MQTT entity registry entries by unique_id."""
        return {e["unique_id"]: e for e in await self.call("config/entity_registry/list")
                if e["platform"] == "mqtt"}

    async def states(self) -> dict[str, str]:
        return {s["entity_id"]: s["state"] for s in await self.call("get_states")}

    async def stop(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)


@dataclass
class Site:
    ha: HomeAssistant
    bridge: Bridge
    config: Config
    expected: list[Entity]
    line: SimulatedLine
    inverter: SimUnit
    mosquitto: Mosquitto


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    directory = tmp_path_factory.mktemp("real-ha")
    python = ha_python()  # fail before starting anything when HA is missing
    assert python.exists()
    mosquitto = Mosquitto(directory)
    mosquitto.start()
    line = SimulatedLine(demo_units(), baudrate=19200, directory=str(directory))
    inverter = SimUnit(1, input={0: 0, 1: 1500, 2: 0, 3: 42_000})
    tcp = None
    ha = HomeAssistant(directory)
    try:
        await line.start()
        tcp = await serve_tcp(SimBus([inverter]), "127.0.0.1", 0)
        config = demo_config(mosquitto.port, line.path, tcp_server_port(tcp)).model_copy(
            update={"homeassistant": HomeAssistantSettings(discovery=True),
                    "health_interval": 2.0})
        async with running_bridge(config) as bridge:
            await ha.start()
            await ha.onboard()
            await ha.add_mqtt(mosquitto.port)
            expected = Discovery(config, bridge.topics).entities()
            yield Site(ha, bridge, config, expected, line, inverter, mosquitto)
    finally:
        await ha.stop()
        if tcp is not None:
            await tcp.shutdown()
        await line.stop()
        mosquitto.stop()


async def wait_for_entities(site: Site) -> dict[str, dict[str, Any]]:
    wanted = {e.unique_id for e in site.expected}
    found: dict[str, dict[str, Any]] = {}

    async def all_there() -> bool:
        found.update(await site.ha.entities())
        return wanted <= set(found)
    try:
        await wait_until(all_there, timeout=60, what="every entity in HA's registry")
    except AssertionError:
        missing = sorted(wanted - set(found))
        raise AssertionError(f"missing in HA: {missing}\n{site.ha.log_tail()}") from None
    return found


def expected_state(entity: Entity, value: Any) -> str | None:
    """What HA shows for a value the bridge read (None: compare as a number)."""
    kind = entity.topic.split("/")[1]
    if kind in (Component.BINARY_SENSOR, Component.SWITCH):
        return "on" if value else "off"
    if isinstance(value, str):
        return value
    return None


async def test_every_datapoint_is_an_entity_with_its_state(site: Site) -> None:
    entities = await wait_for_entities(site)
    assert len(site.expected) == DEMO_ENTITIES
    assert set(entities) == {e.unique_id for e in site.expected}
    for entity in site.expected:
        registered = entities[entity.unique_id]
        assert registered["entity_id"] == entity.config["default_entity_id"]
        assert registered["disabled_by"] is None
    points = {f"main_{dev_id}_{name}": (dev_id, name) for dev_id, runner in
              site.bridge.runners.items() for name in runner.device.points}
    assert len(points) == DEMO_ENTITIES - 6  # every datapoint, nothing else

    def mismatches(states: dict[str, str]) -> list[str]:
        wrong = []
        for entity in site.expected:
            entity_id = entity.config["default_entity_id"]
            if entity.unique_id not in points:
                continue
            dev_id, name = points[entity.unique_id]
            value = site.bridge.runners[dev_id].state.get(name)
            shown, want = states.get(entity_id), expected_state(entity, value)
            same = shown == want if want is not None else \
                shown is not None and _same_number(shown, value)
            if not same:
                wrong.append(f"{entity_id}: HA {shown!r}, bridge {value!r}")
        return wrong

    last: list[str] = []

    async def agree() -> bool:
        nonlocal last
        last = mismatches(await site.ha.states())
        return not last
    try:
        await wait_until(agree, timeout=30, what="HA's states to match the bridge's")
    except AssertionError:
        raise AssertionError("\n".join(last)) from None
    states = await site.ha.states()
    assert states["binary_sensor.main_bridge_connectivity"] == "on"
    assert states["number.main_heatpump_setpoint"] == "21.5"
    assert states["select.main_heatpump_mode"] == "heat"
    assert states["switch.main_io_relay2"] == "on"
    assert states["binary_sensor.main_io_door_contact"] == "on"
    assert float(states["sensor.main_bridge_uptime"]) >= 0


def _same_number(shown: str, value: Any) -> bool:
    try:
        return math.isclose(float(shown), float(value), rel_tol=1e-6, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


async def test_each_bridge_device_is_one_ha_device_under_the_bridge(site: Site) -> None:
    entities = await wait_for_entities(site)
    devices = await site.ha.call("config/device_registry/list")
    by_identifier = {tuple(d["identifiers"][0]): d for d in devices if d["identifiers"]}
    bridge = by_identifier[("mqtt", "main_bridge")]
    assert bridge["name"] == "Modbus bridge" and bridge["sw_version"]
    for dev in site.config.devices:
        device = by_identifier[("mqtt", f"main_{dev.id}")]
        assert device["name"] == (dev.name or dev.id)
        assert device["via_device_id"] == bridge["id"]
        mine = [e for uid, e in entities.items() if uid.startswith(f"main_{dev.id}_")]
        assert len(mine) == len(dev.datapoints)
        assert {e["device_id"] for e in mine} == {device["id"]}
    assert len([d for d in devices if d["identifiers"] and d["identifiers"][0][0] == "mqtt"]) \
        == len(site.config.devices) + 1


async def test_home_assistant_service_calls_change_registers(site: Site) -> None:
    await wait_for_entities(site)
    heatpump, io = site.line.unit(2), site.line.unit(3)
    targets = ("number.main_heatpump_setpoint", "switch.main_io_relay2",
               "switch.main_io_relay1", "select.main_heatpump_mode")

    async def available() -> bool:  # registered is not enough: HA acts on a known state
        states = await site.ha.states()
        return all(states.get(t) not in (None, "unavailable", "unknown") for t in targets)
    await wait_until(available, timeout=30, what="the entities' first states in HA")
    calls = [
        ("number", "set_value", "number.main_heatpump_setpoint", {"value": 22.5},
         lambda: heatpump.holding[100] == 225),
        ("switch", "turn_off", "switch.main_io_relay2", {}, lambda: io.coil[1] is False),
        ("switch", "turn_on", "switch.main_io_relay1", {}, lambda: io.coil[0] is True),
        ("select", "select_option", "select.main_heatpump_mode", {"option": "cool"},
         lambda: heatpump.holding[101] == 2),
    ]
    for domain, service, entity_id, data, written in calls:
        await site.ha.call("call_service", domain=domain, service=service,
                           target={"entity_id": entity_id}, service_data=data)
        await wait_until(written, timeout=15, what=f"{domain}.{service} on the bus")

    async def shown() -> bool:  # read back by the bridge, and HA shows it
        states = await site.ha.states()
        return (states["number.main_heatpump_setpoint"], states["switch.main_io_relay2"],
                states["switch.main_io_relay1"], states["select.main_heatpump_mode"]) == (
            "22.5", "off", "on", "cool")
    await wait_until(shown, timeout=15, what="HA to show the new values")


async def test_home_assistant_logs_no_complaint_about_the_configs(site: Site) -> None:
    """HA reports a config it dislikes (unit, state class, template) only in its log."""
    await wait_for_entities(site)
    await site.ha.states()
    log = (site.ha.dir / "ha.log").read_text(errors="replace")
    complaints = [line for line in log.splitlines()
                  if ("WARNING" in line or "ERROR" in line)
                  and ("components.mqtt" in line or "components.sensor" in line
                       or "helpers.template" in line or "main_" in line)]
    assert complaints == [], "\n".join(complaints)


DUMP_TABLES = """
import json
from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.number.const import DEVICE_CLASS_UNITS as NUMBER_UNITS
from homeassistant.components.sensor.const import (
    DEVICE_CLASS_STATE_CLASSES, DEVICE_CLASS_UNITS, SensorDeviceClass)
from homeassistant.components.switch import SwitchDeviceClass
print(json.dumps({
    "sensor_units": {str(k): sorted(map(str, v)) for k, v in DEVICE_CLASS_UNITS.items()},
    "sensor_classes": sorted(map(str, SensorDeviceClass)),
    "state_classes": {str(k): sorted(map(str, v)) for k, v in
                      DEVICE_CLASS_STATE_CLASSES.items()},
    "number_units": {str(k): sorted(map(str, v)) for k, v in NUMBER_UNITS.items()},
    "binary_sensor": sorted(map(str, BinarySensorDeviceClass)),
    "switch": sorted(map(str, SwitchDeviceClass)),
}))
"""


async def test_our_table_is_home_assistants_own() -> None:
    """bridge/core/ha_classes.py against the tables of the HA version we test with."""
    import json

    from bridge.core import ha_classes as ours
    dump = await asyncio.to_thread(subprocess.run, [str(ha_python()), "-c", DUMP_TABLES],
                                   check=True, capture_output=True, text=True, timeout=120)
    ha = json.loads(dump.stdout)

    def units(table: Any) -> dict[str, list[str]]:
        return {k: sorted(str(u) for u in v) for k, v in table.items()}
    assert units(ours.SENSOR_UNITS) == ha["sensor_units"]
    assert sorted(ours.SENSOR_CLASSES) == ha["sensor_classes"]
    assert {k: units(ours.SENSOR_UNITS)[k] for k in ha["number_units"]} == ha["number_units"]
    for device_class in ha["sensor_classes"]:
        assert sorted(ours.state_classes(device_class)) == \
            ha["state_classes"].get(device_class, ["measurement"]), device_class
    assert sorted(ours.BINARY_SENSOR_CLASSES) == ha["binary_sensor"]
    assert sorted(ours.SWITCH_CLASSES) == ha["switch"]


async def test_a_silent_unit_makes_its_entities_unavailable_and_back(site: Site) -> None:
    """availability_mode all: the device's own availability counts, not only the bridge's."""
    await wait_for_entities(site)
    io = site.line.unit(3)  # the demo's I/O module, polled every second

    async def door(state: str) -> bool:
        return (await site.ha.states()).get("binary_sensor.main_io_door_contact") == state
    async def flow_shown() -> bool:
        return (await site.ha.states()).get("sensor.main_heatpump_flow_temperature") \
            not in (None, "unavailable")
    # Available first: before HA's first states every entity shows "unavailable".
    await wait_until(lambda: door("on"), timeout=30, what="available")
    await wait_until(flow_shown, timeout=30, what="the heat pump's first state")
    io.mode = "silent"
    try:
        await wait_until(lambda: door("unavailable"), timeout=30, what="unavailable")
        assert (await site.ha.states())["sensor.main_heatpump_flow_temperature"] != \
            "unavailable"  # the other devices on the line are not
    finally:
        io.mode = "ok"
    await wait_until(lambda: door("on"), timeout=30, what="available again")


async def test_after_a_broker_restart_every_entity_is_back_with_fresh_states(site: Site
                                                                          ) -> None:
    """The shipped mosquitto.conf keeps nothing across a restart (persistence false):
    the retained discovery configs, availabilities and states are gone with it. The
    bridge reconnects and publishes them again, HA reconnects (its birth message asks
    for the configs once more), and every entity is available with a value read
    after the restart. Last in this module: the broker it shares restarts."""
    await wait_for_entities(site)
    site.mosquitto.stop()
    site.inverter.input[1] = 1600  # pv_power (uint32 at input 0-1): 1500 -> 1600
    site.mosquitto.start()
    wanted = [e.config["default_entity_id"] for e in site.expected]
    last: dict[str, str] = {}

    async def back() -> bool:
        nonlocal last
        last = await site.ha.states()
        return last.get("sensor.main_inverter_pv_power") == "1600" and \
            all(last.get(entity_id) not in (None, "unavailable") for entity_id in wanted)
    try:
        await wait_until(back, timeout=90, what="every entity back after the restart")
    except AssertionError:
        gone = {e: last.get(e) for e in wanted if last.get(e) in (None, "unavailable")}
        raise AssertionError(f"pv_power {last.get('sensor.main_inverter_pv_power')!r}, "
                             f"not back: {gone}\n{site.ha.log_tail()}") from None
    assert last["binary_sensor.main_bridge_connectivity"] == "on"
