"""Burst intake: 10,000 commands at once, every one answered exactly once, against the
bridge as its own process.

The burst of benchmarks/burst.py (two units on a simulated RS-485 line, a TCP device,
a unit on the line that never answers; queue of 64 per port, so most commands are
answered `busy` or `expired`), with nothing of the measurement in Python on the hot
path: the commands are published by `mosquitto_pub -l` (one per device, QoS 1, each
command with a Response Topic and Correlation Data), the answers on both channels
(the reply topic and `<base>/<device>/response`) are received by `mosquitto_sub`,
and the simulated devices run in a process of their own. A Python client was the
limit before (it published ~2,000 commands/s while decoding 20,000 answers).

The rate is commands answered per second from the first publish to the last answer;
`BurstReport.problems()` checks every command got one reply and one response, from
the right device, with an allowed code and, when ok, the right registers.

    python -m benchmarks.intake devices

runs the simulated devices alone: it prints `<pty path> <gateway port>` and serves
until terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.burst import HEALTHY, MIX, Answer, BurstReport, load_config, plan
from benchmarks.harness import REPO, bridge_process, broker, cpu_seconds, helper_process

CORRELATION = "burst"  # mosquitto_pub sends the same Correlation Data with each line


@dataclass
class BurstResult:
    commands: int
    answered_per_s: float  # every answer in, over the whole burst (deadlines included)
    sent_per_s: float  # the publishers', acknowledged by the broker
    cpu_us_per_command: float  # the bridge's, over the burst
    problems: list[str]
    codes: dict[str, int]


async def run_burst(src: Path = REPO, count: int = 10_000, timeout: float = 60.0
                    ) -> BurstResult:
    from tests.broker import probe

    token = uuid.uuid4().hex[:8]
    reply_topic = f"replies/burst/{token}"
    with broker() as port:
        async with helper_process("benchmarks.intake", "devices") as devices:
            assert devices.stdout is not None
            path, gateway = (await asyncio.wait_for(devices.stdout.readline(), 30)).split()
            config = load_config(port, path.decode(), int(gateway))
            async with probe(port, subscribe="modbus/+/availability") as watcher, \
                    bridge_process(config, src) as bridge:
                for device in HEALTHY:
                    await watcher.expect(f"modbus/{device}/availability",
                                         lambda m: m.text == "online", timeout=30)
                ids = {f"{token}-{n}": device for n, device in enumerate(plan(count, MIX))}
                async with answers(port, reply_topic, 2 * count, timeout) as (got, last):
                    started, cpu0 = time.perf_counter(), cpu_seconds(bridge.pid)
                    publish_s = await _publish(port, ids, reply_topic)
                    total_s = await last() - started
                    cpu = cpu_seconds(bridge.pid) - cpu0
    report = BurstReport(count, publish_s, total_s, ids, got.replies, got.responses, [],
                         got.strays)
    return BurstResult(count, report.rate, count / max(publish_s, 1e-9), cpu / count * 1e6,
                       report.problems(), dict(report.totals()))


async def _publish(port: int, ids: dict[str, str], reply_topic: str) -> float:
    """One `mosquitto_pub -l` per device, all at once; seconds until all are done (every
    command acknowledged by the broker)."""
    lines = {device: command_lines((rid for rid, d in ids.items() if d == device), 2)
             for device, _ in MIX}
    started = time.perf_counter()
    procs = [await publisher(port, f"modbus/{device}/request", reply_topic)
             for device in lines]
    await asyncio.gather(*(proc.communicate(data)
                           for proc, data in zip(procs, lines.values(), strict=True)))
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"mosquitto_pub exited with {[p.returncode for p in procs]}")
    return time.perf_counter() - started


def command_lines(ids: Iterable[str], registers: int) -> bytes:
    """A `read_holding_registers` command per id, one per line."""
    return "".join(json.dumps({"id": rid, "op": "read_holding_registers", "address": 0,
                               "count": registers}) + "\n" for rid in ids).encode()


async def publisher(port: int, topic: str, reply_topic: str) -> asyncio.subprocess.Process:
    """`mosquitto_pub -l`: each line written to its stdin is a command (QoS 1, MQTT v5,
    with a Response Topic and Correlation Data); it exits when stdin closes and all
    are acknowledged."""
    return await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1",
        "-t", topic, "-l", "-D", "publish", "response-topic", reply_topic,
        "-D", "publish", "correlation-data", CORRELATION, stdin=subprocess.PIPE)


class Answers:
    """Every answer `mosquitto_sub` printed, by command id and channel: filled in when
    it ended, after the window."""

    def __init__(self, reply_topic: str) -> None:
        self.reply_topic = reply_topic
        self.replies: dict[str, list[Answer]] = {}
        self.responses: dict[str, list[Answer]] = {}
        self.strays: list[str] = []

    def take(self, output: bytes) -> None:
        """One answer per line: the bridge's JSON holds no raw newline."""
        for line in output.decode(errors="replace").splitlines():
            topic, correlation, payload = line.split("\t", 2)
            try:
                body = json.loads(payload)
            except ValueError:
                body = None
            rid = body.get("id") if isinstance(body, dict) else None
            if not isinstance(body, dict) or not isinstance(rid, str):
                self.strays.append(f"{topic}: {payload:.100}")
            elif topic != self.reply_topic:
                self.responses.setdefault(rid, []).append(Answer.of(body))
            elif correlation != CORRELATION:
                self.strays.append(f"reply to {rid} with correlation {correlation!r}")
            else:
                self.replies.setdefault(rid, []).append(Answer.of(body))


@contextlib.asynccontextmanager
async def answers(port: int, reply_topic: str, expect: int, timeout: float, *,
                  responses: bool = True
                  ) -> AsyncIterator[tuple[Answers, Callable[[], Awaitable[float]]]]:
    """`mosquitto_sub` on the reply topic and (`responses`) every
    `<base>/<device>/response`, until `expect` answers came (or `timeout`). Yields the
    answers (to look at after the window) and an awaitable: the moment the last came,
    by `time.perf_counter()`.

    `mosquitto_sub -C` exits after the last answer and writes them to a file: nothing
    of this process runs while the answers come. Reading them from a pipe woke this
    process at every answer (~15 % of a core at 3,000 commands/s), CPU taken from the
    bridge on a 2-core machine, and only in the bridge's half of the comparison."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "answers"
        with output.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5",
                "-q", "1", "-t", reply_topic,
                *(("-t", "modbus/+/response") if responses else ()),
                "-F", "%t\t%D\t%p", "-C", str(expect),
                "-R",  # not the retained answers of earlier commands
                stdout=sink)

        async def last() -> float:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout)
            return time.perf_counter()

        got = Answers(reply_topic)
        await asyncio.sleep(0.5)  # connected and subscribed
        try:
            yield got, last
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
            got.take(output.read_bytes())


async def _devices() -> None:
    """The burst's devices (tests/conftest.py meter units), printed as path and port."""
    import logging
    import signal

    from bridge.modbus.simulator import SimulatedLine
    from tests.conftest import TcpGateway, meter_unit

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    gateway = TcpGateway([meter_unit(1), meter_unit(2)])
    await gateway.start()
    try:
        async with SimulatedLine([meter_unit(1), meter_unit(2)]) as line:
            print(line.path, gateway.port, flush=True)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
    finally:
        await gateway.stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["devices"]:
        asyncio.run(_devices())
    else:
        result = asyncio.run(run_burst())
        print(result)
