"""Modbus servers that answer wrongly (issue 9, items 5 and 6), against the bridge
in-process and a real mosquitto: a reply for another function is not data, exception
codes outside the spec are reported as what they are, and garbage replies cost one
log line each within a fixed budget, never a traceback."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.modbus.simulator import SimulatedLine
from tests.broker import Mosquitto, probe
from tests.e2e import make_config, running_bridge
from tests.misbehaving import MisbehavingServer

READ = {"op": "read_holding_registers", "address": 0, "count": 2}


@pytest.fixture
async def server() -> AsyncIterator[MisbehavingServer]:
    async with MisbehavingServer() as s:
        yield s


def config_for(mosquitto: Mosquitto, line: SimulatedLine, server: MisbehavingServer,
               poll_interval: float = 0) -> dict[str, Any]:
    config = make_config(mosquitto.port, line.path)
    config["devices"] = [{
        "id": "odd", "tcp": {"host": "127.0.0.1", "port": server.port}, "unit": 1,
        "timeout": 0.5, "retries": 0, "offline_after": 3, "poll_interval": poll_interval,
        "datapoints": [{"name": "h0", "table": "holding", "address": 0, "type": "uint16"}]}]
    return config


@pytest.mark.parametrize(("mode", "code", "message"), [
    ("wrong_fc", "timeout", "reply is for function 4, asked for function 3"),
    ("exception:85", "modbus_exception", "non-standard exception code 85"),
    ("exception:2", "modbus_exception", "illegal data address"),
    ("bad_count", "timeout", "reply cannot be decoded"),
])
async def test_wrong_replies_are_reported_as_what_they_are(
        mosquitto: Mosquitto, line: SimulatedLine, server: MisbehavingServer, mode: str,
        code: str, message: str) -> None:
    async with running_bridge(config_for(mosquitto, line, server)), \
            probe(mosquitto.port) as p:
        await p.expect("modbus/bridge/state", lambda m: m.text == "online")
        server.mode = "ok"
        assert (await p.request("odd", dict(READ)))["registers"] == [0, 1]
        server.mode = mode
        answer = await p.request("odd", dict(READ))
        assert answer["ok"] is False, answer
        assert answer["error"]["code"] == code, answer
        assert message in answer["error"]["message"], answer
        if mode.startswith("exception:"):
            assert answer["error"]["exception_code"] == int(mode.split(":")[1])
        server.mode = "ok"
        assert (await p.request("odd", dict(READ)))["registers"] == [0, 1]


@pytest.mark.parametrize("mode", ["bad_count", "garbage"])
async def test_garbage_replies_log_at_a_bounded_rate(
        mosquitto: Mosquitto, line: SimulatedLine, server: MisbehavingServer, mode: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server.mode = mode
    started = time.monotonic()  # the budget runs from the bridge's start
    async with running_bridge(config_for(mosquitto, line, server, poll_interval=0.05)), \
            probe(mosquitto.port) as p:
        await p.expect("modbus/odd/availability", lambda m: m.text == "offline")
        # Commands always get their first attempt (polls back off): 100 garbage replies.
        for n in range(100):
            answer = await p.request("odd", {"id": n, **READ})
            # (random bytes are now and then a well-formed reply)
            assert answer["ok"] or answer["error"]["code"] == "timeout", answer
        records = [r for r in caplog.records if r.name.startswith(("bridge", "asyncio"))]
        lines = [f"{r.name}: {r.getMessage()}" for r in records]
        assert not [r for r in records if r.exc_info or r.name == "asyncio"], lines
        garbled = [line for line in lines if "dropped a reply" in line]
        # Each port gets 10 such lines at once, then one per 6 s; so does each device
        # for its availability (random bytes are now and then a valid reply: it flaps).
        allowed = 10 + int((time.monotonic() - started) / 6) + 1
        assert 1 <= len(garbled) <= allowed, "\n".join(lines)
        assert len(lines) <= 2 * allowed + 2, "\n".join(lines)
        print(f"{server.requests} garbage replies, {len(lines)} log lines")
