"""Values and deadlines a sender chooses (issue 9, item 10), through the real broker and
simulated line: numeric text is plain ASCII decimal only, and a v5 Message Expiry
cannot extend bus.command_deadline."""

from __future__ import annotations

import pytest

from bridge.modbus.simulator import SimulatedLine
from tests.broker import Mosquitto, probe
from tests.e2e import make_config, running_bridge


@pytest.mark.parametrize("text", ["1_0", "\u0661\u0662", "\uff15", "0x10", "nan", "1e"])
async def test_numeric_text_is_plain_ascii_decimal(mosquitto: Mosquitto, line: SimulatedLine,
                                                   text: str) -> None:
    config = make_config(mosquitto.port, line.path)
    async with running_bridge(config), probe(mosquitto.port) as p:
        await p.expect("modbus/meter1/availability", lambda m: m.text == "online")
        before = line.unit(1).holding[4]
        mark = p.mark()
        await p.publish("modbus/meter1/set/h4", text.encode())
        answer = (await p.expect("modbus/meter1/response", after=mark)).json()
        assert answer["ok"] is False, answer
        assert answer["error"]["code"] in ("invalid_request", "out_of_range"), answer
        assert line.unit(1).holding[4] == before
        # Plain decimal still works: 2.5 (scale 0.1) is 25.
        mark = p.mark()
        await p.publish("modbus/meter1/set/h4", b" 2.5\n")
        answer = (await p.expect("modbus/meter1/response", after=mark)).json()
        assert answer["ok"] is True and answer["values"] == {"h4": 2.5}, answer
        assert line.unit(1).holding[4] == 25


async def test_message_expiry_cannot_extend_the_command_deadline(
        mosquitto: Mosquitto, line: SimulatedLine) -> None:
    config = make_config(mosquitto.port, line.path, bus={"command_deadline": 1.0})
    config["devices"] = [d for d in config["devices"] if d["id"] == "meter1"]
    config["devices"][0].update(poll_interval=0, timeout=1.0)
    async with running_bridge(config), probe(mosquitto.port) as p:
        line.unit(1).mode, line.unit(1).delay = "slow", 0.3
        mark = p.mark()
        # Eight slow reads (0.3 s each) ahead of it: the last one waits past 1 s.
        for n in range(8):
            await p.publish("modbus/meter1/request",
                            f'{{"id": {n}, "op": "read_coils", "address": 0, "count": 1}}')
        await p.publish("modbus/meter1/request",
                        '{"id": "late", "op": "read_coils", "address": 0, "count": 1}',
                        expiry=3600)
        answer = (await p.expect("modbus/meter1/response",
                                 lambda m: m.json()["id"] == "late", after=mark)).json()
        assert answer["ok"] is False and answer["error"]["code"] == "expired", answer
        assert answer["duration_ms"] < 3000, answer
