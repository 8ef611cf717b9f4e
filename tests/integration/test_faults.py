"""Faults the bridge must survive, with real components: USB unplug, broker restart,
a dead unit on a shared port, garbage on the line, a TCP device that refuses."""

from __future__ import annotations

import statistics
import time

import pytest

from tests.broker import probe
from tests.conftest import wait_until
from tests.e2e import make_config, running_bridge


@pytest.fixture
async def bridge(mosquitto, line, gateway):
    async with running_bridge(make_config(mosquitto.port, line.path, gateway.port)) as b:
        yield b


@pytest.fixture
async def client(mosquitto, bridge):
    async with probe(mosquitto.port) as p:
        for device in ("meter1", "meter2", "plc"):
            await p.expect(f"modbus/{device}/availability", lambda m: m.text == "online")
        yield p


async def test_usb_unplug_and_replug(client, line):
    mark = client.mark()
    started = time.monotonic()
    await line.unplug()
    for device in ("meter1", "meter2"):
        await client.expect(f"modbus/{device}/availability", lambda m: m.text == "offline",
                            after=mark)
    offline_after = time.monotonic() - started
    response = await client.request("meter1", {"op": "read", "datapoints": ["h0"]})
    assert response["error"]["code"] == "port_unavailable"
    line.unit(1).holding[0] = 4242  # changes while unplugged
    mark2 = client.mark()
    started = time.monotonic()
    await line.replug()
    for device in ("meter1", "meter2"):
        await client.expect(f"modbus/{device}/availability", lambda m: m.text == "online",
                            after=mark2, timeout=20)
    back_after = time.monotonic() - started
    await client.expect("modbus/meter1", lambda m: m.json()["h0"] == 4242, after=mark2)
    # The TCP device on another port never noticed.
    assert not [m for m in client.seen[mark:] if m.topic == "modbus/plc/availability"]
    print(f"offline {offline_after:.2f} s after unplug, online {back_after:.2f} s after replug")


async def test_broker_restart(client, mosquitto, line, bridge):
    await client.expect("modbus/meter1", lambda m: m.json()["h0"] == 100)
    mosquitto.stop()
    await wait_until(lambda: not bridge.link.connected.is_set(), what="bridge noticed")
    line.unit(1).holding[0] = 777  # polled while the broker is away
    await wait_until(lambda: bridge.runners["meter1"].state.get("h0") == 777, what="polled")
    started = time.monotonic()
    mosquitto.start()  # same port, no persistence: it forgot everything retained
    async with probe(mosquitto.port) as late:
        assert (await late.expect("modbus/bridge/state", timeout=15)).text == "online"
        print(f"republished {time.monotonic() - started:.2f} s after the broker came back")
        assert (await late.expect("modbus/meter1/availability")).text == "online"
        assert (await late.expect("modbus/meter1")).json()["h0"] == 777
        assert (await late.expect("modbus/meter1/h0")).text == "777"
        assert (await late.expect("modbus/bridge/info")).json()["devices"]
        response = await late.request("meter1", {"op": "read_holding_registers",
                                                 "address": 1, "count": 1})
        assert response["registers"] == [101]


async def _latencies(client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        response = await client.request("meter1", {"op": "read_holding_registers",
                                                   "address": 0, "count": 2})
        assert response["ok"], response
        out.append(response["duration_ms"])
    return out


async def test_a_dead_unit_barely_slows_a_healthy_one(client, line):
    """meter1's command latency while ghost (no responder, timeout 0.1 s) is polled and
    commanded stays within one ghost timeout of its normal value."""
    baseline = statistics.median(await _latencies(client, 20))
    ghost_commands = [client.publish("modbus/ghost/request", '{"op": "read"}')
                      for _ in range(5)]
    for publish in ghost_commands:
        await publish
    loaded = await _latencies(client, 20)
    print(f"meter1 p50 {baseline:.1f} ms alone, p50 {statistics.median(loaded):.1f} ms "
          f"max {max(loaded):.1f} ms with a dead unit")
    assert statistics.median(loaded) <= baseline + 100 + 50  # ghost timeout 100 ms + slack


@pytest.mark.parametrize("mode", ["bad_crc", "truncated", "slow"])
async def test_garbage_and_slow_units_get_typed_errors_others_unaffected(client, line, mode):
    unit = line.unit(2)
    unit.mode, unit.delay = mode, 1.0
    response = await client.request("meter2", {"op": "read_holding_registers", "address": 0,
                                               "count": 2})
    assert response["error"]["code"] == "timeout"
    response = await client.request("meter1", {"op": "read_holding_registers", "address": 0,
                                               "count": 2})
    assert response["registers"] == [100, 101]
    unit.mode = "ok"
    mark = client.mark()
    await client.expect("modbus/meter2", lambda m: m.json()["h0"] == 200, after=mark,
                        timeout=15)


async def test_tcp_device_refusing_goes_offline_and_recovers(client, gateway):
    mark = client.mark()
    await gateway.stop()
    await client.expect("modbus/plc/availability", lambda m: m.text == "offline", after=mark)
    response = await client.request("plc", {"op": "read", "datapoints": ["h0"]})
    assert response["error"]["code"] == "port_unavailable"
    mark = client.mark()
    await gateway.start()
    await client.expect("modbus/plc/availability", lambda m: m.text == "online", after=mark,
                        timeout=20)
