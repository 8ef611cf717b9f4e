"""End-to-end fuzz over the real broker: hostile payloads to every command topic of
two devices (serial and TCP). Zero crashes, every message answered exactly once
with a typed code, the other device on the shared line untouched, bridge online.
`python -m benchmarks.fuzz --count 50000` runs the same for longer."""

from __future__ import annotations

from benchmarks.fuzz import TYPED_CODES, fuzz
from tests.broker import probe
from tests.e2e import make_config, points_meter, running_bridge

COUNT = 2000


async def test_fuzz_every_command_topic(mosquitto, line, gateway):
    meter2_before = dict(line.unit(2).holding), dict(line.unit(2).coil)
    config = make_config(mosquitto.port, line.path, gateway.port,
                         bus={"queue_size": 256, "command_deadline": 30.0})
    async with running_bridge(config) as bridge, probe(mosquitto.port) as watcher:
        for device in ("meter1", "meter2", "plc"):
            await watcher.expect(f"modbus/{device}/availability", lambda m: m.text == "online")
        mark = watcher.mark()
        names = [p["name"] for p in points_meter()]
        report = await fuzz(mosquitto.port, {"meter1": names, "plc": ["h0", "h1"]},
                            COUNT, seed=20261125)
        print(report)
        assert report.sent == COUNT
        assert report.unanswered == []
        assert report.duplicates == 0
        assert set(report.codes) <= TYPED_CODES, report.codes
        assert report.codes["invalid_json"] > 0 and report.codes["invalid_request"] > 0

        # Still alive and truthful: nothing went offline, the other unit is untouched
        # and answers as before.
        assert not bridge.stopping.is_set()
        went = [(m.topic, m.text) for m in watcher.seen[mark:]
                if m.topic.endswith(("availability", "bridge/state")) and m.text != "online"
                and m.topic != "modbus/ghost/availability"]  # ghost has no responder
        assert went == []
        assert (dict(line.unit(2).holding), dict(line.unit(2).coil)) == meter2_before
        response = await watcher.request("meter2", {"op": "read_holding_registers",
                                                    "address": 0, "count": 3})
        assert response["registers"] == [200, 201, 202]
        response = await watcher.request("meter1", {"op": "read_coils", "address": 0,
                                                    "count": 1})
        assert response["ok"] is True
