"""Load: a burst of commands over MQTT, published as fast as one client can, to several
devices at once (two units on one simulated RS-485 line, a TCP device, and a unit on
the same line that never answers).

Used by tests/test_load.py (10,000 commands in CI); run by hand:

    python -m benchmarks.burst --count 10000

It starts its own mosquitto (loopback, free port), simulated line (units 1 and 2),
simulated TCP gateway and bridge (tests/e2e.py), measures 100 sequential commands
with no load as a baseline, then sends the burst and prints: commands/s, counts per
device and code, p50/p95/max response latency, and the process RSS before and after
(the bridge, the simulators and this client all run in this one process).

Every command carries a unique id, and an MQTT v5 Response Topic plus Correlation
Data (= its id), so each answer is matched to its command on both channels the
bridge answers on: the reply topic and `<base>/<device>/response` (retained).

Broker limits: mosquitto drops QoS>=1 messages to a subscriber beyond
`max_inflight_messages` (default 20) + `max_queued_messages` (default 1000) per client
(shared/spec/architecture.md). The limit that matters here is that per-subscriber
queue, twice: the bridge is sent the whole burst of commands far faster than it reads
them (~1,000/s; the backlog waits in the broker), and the burst client is sent two
answers per command. tests/broker.py sets `max_inflight_messages 0` (no limit) and
`max_queued_messages 100000`, so the broker drops nothing and every missing answer
is the bridge's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import socket
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# The mix of a burst: device and weight (out of 10).
MIX: tuple[tuple[str, int], ...] = (("meter1", 3), ("meter2", 3), ("plc", 3), ("ghost", 1))
HEALTHY = ("meter1", "meter2", "plc")
# What a successful `read_holding_registers address 0 count 2` returns (tests/conftest.py
# meter_unit: holding[a] = unit * 100 + a; the gateway's plc is unit 1).
EXPECTED_REGISTERS: dict[str, tuple[int, ...]] = {
    "meter1": (100, 101), "meter2": (200, 201), "plc": (100, 101)}
# Codes allowed per device. A healthy unit answers (ok), or the command is refused at
# once because its port's queue is full (busy), or waited in the queue past its
# deadline (expired). The unit with no responder (ghost) never says ok: its commands
# time out, or are busy/expired like anyone's. Anything else (a timeout from a healthy
# unit, port_unavailable, internal, ...) is a failure.
HEALTHY_CODES = frozenset({"ok", "busy", "expired"})
ALLOWED_CODES: dict[str, frozenset[str]] = {
    "meter1": HEALTHY_CODES, "meter2": HEALTHY_CODES, "plc": HEALTHY_CODES,
    "ghost": frozenset({"timeout", "busy", "expired"})}
WINDOW = 1000  # the burst client's QoS 1 publishes awaiting their PUBACK, at most
# The bus under load: make_config's queue of 64 per port. The serial line (meter1,
# meter2 and ghost share it) serves ~100 commands/s, the bridge takes commands in at
# ~1,000/s, so that queue fills and `busy` really happens. A command deadline of 2 s
# (make_config: 5 s) lets ghost's commands, which only get the line when no healthy
# command is waiting, expire in the queue instead of holding it for 0.1 s each.
LOAD_BUS: dict[str, Any] = {"queue_size": 64, "command_deadline": 2.0}
# The healthy units' timeout under load: the RTU and TCP simulators run on the same
# event loop as the bridge and this client, and when that loop is saturated (or the
# machine's two cores are busy elsewhere) a reply can take longer than make_config's
# 0.3 s to be *produced*: "4 x plc: timeout" failed a run that way. The test is about
# the MQTT side, so the healthy units get a timeout the load cannot reach; ghost keeps
# its 0.1 s.
LOAD_UNIT_TIMEOUT = 3.0


def load_config(broker_port: int, line_path: str, gateway_port: int,
                bus: dict[str, Any] | None = None) -> dict[str, Any]:
    """tests/e2e.py make_config with the bus and unit timeouts of a load run."""
    from tests.e2e import make_config

    config = make_config(broker_port, line_path, gateway_port, bus=bus or LOAD_BUS)
    for device in config["devices"]:
        if device["id"] in HEALTHY:
            device["timeout"] = LOAD_UNIT_TIMEOUT
    return config


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident set size (VmRSS), in MB; this one's by default."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def settled_rss_mb() -> float:
    gc.collect()
    return rss_mb()


def plan(count: int, mix: Sequence[tuple[str, int]] = MIX) -> list[str]:
    """The device of each of `count` commands, interleaved by weight."""
    cycle: list[str] = []  # meter1 meter2 plc ghost meter1 meter2 plc meter1 ...
    remaining = dict(mix)
    while any(remaining.values()):
        for device, _ in mix:
            if remaining[device] > 0:
                cycle.append(device)
                remaining[device] -= 1
    return [cycle[n % len(cycle)] for n in range(count)]


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def latency_line(name: str, ms: Sequence[float]) -> str:
    if not ms:
        return f"{name}: no samples"
    return (f"{name}: n={len(ms)} p50={statistics.median(ms):.1f} ms "
            f"p95={percentile(ms, 0.95):.1f} ms max={max(ms):.1f} ms")


@dataclass(frozen=True, slots=True)
class Answer:
    """What we keep of one answer (not the whole JSON: RSS is measured)."""

    code: str  # "ok" or error.code
    device: str | None
    registers: tuple[int, ...] | None
    duration_ms: float
    message: str | None  # error.message

    @classmethod
    def of(cls, body: dict[str, Any]) -> Answer:
        error = body.get("error")
        if not isinstance(error, dict):
            error = {}
        registers = body.get("registers")
        return cls("ok" if body.get("ok") is True else str(error.get("code")),
                   body.get("device"),
                   tuple(registers) if isinstance(registers, list) else None,
                   float(body.get("duration_ms") or 0.0), error.get("message"))


@dataclass
class Requester:
    """One MQTT v5 client that sends commands (id, Response Topic, Correlation Data) and
    records every answer by id, on the reply topic and on `<base>/<device>/response`."""

    client: aiomqtt.Client
    base: str
    token: str
    sent_at: dict[str, float] = field(default_factory=dict)
    device_of: dict[str, str] = field(default_factory=dict)
    replies: dict[str, list[Answer]] = field(default_factory=dict)
    responses: dict[str, list[Answer]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # publish -> first reply
    strays: list[str] = field(default_factory=list)  # replies we cannot match
    _completed: list[str] = field(default_factory=list)  # ids, as they get both answers
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _acks: dict[int, asyncio.Future[None]] = field(default_factory=dict)  # mid -> PUBACK

    @property
    def reply_topic(self) -> str:
        return f"replies/burst/{self.token}"  # under the bridge's mqtt.reply_prefix

    def new_id(self, n: int) -> str:
        return f"{self.token}-{n}"

    async def send(self, device: str, rid: str, timeout: float) -> None:
        body = {"id": rid, "op": "read_holding_registers", "address": 0, "count": 2}
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = rid.encode()
        self.device_of[rid] = device
        self.sent_at[rid] = time.perf_counter()
        # paho's publish and our own PUBACK table: aiomqtt's publish scans all its
        # pending calls per message, which made this client (not the bridge) the limit
        # of the burst at ~1,400 commands/s.
        info = self.client._client.publish(f"{self.base}/{device}/request", json.dumps(body),
                                           1, False, props)
        if info.rc != 0:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        acked = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = acked
        try:
            async with asyncio.timeout(timeout):
                await acked
        finally:
            self._acks.pop(info.mid, None)

    def on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        acked = self._acks.pop(mid, None)
        if acked is not None and not acked.done():
            acked.set_result(None)

    def answered(self, rid: str) -> bool:
        return rid in self.replies and rid in self.responses

    async def wait_all(self, ids: Sequence[str], timeout: float) -> bool:
        """Wait until every id has both answers, at most `timeout` s; True if so."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        seen = len(self._completed)
        pending = {rid for rid in ids if not self.answered(rid)}
        while pending:
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(remaining, 1.0))
            pending.difference_update(self._completed[seen:])
            seen = len(self._completed)
        return True

    def _receive(self, message: aiomqtt.Message) -> None:
        now = time.perf_counter()
        payload = message.payload
        try:
            body = json.loads(payload if isinstance(payload, bytes | str) else b"")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.strays.append(f"{message.topic.value}: {payload!r:.100}")
            return
        if message.topic.value == self.reply_topic:
            props = message.properties
            correlation = getattr(props, "CorrelationData", None) if props else None
            rid = correlation.decode() if isinstance(correlation, bytes) else None
            if rid is None or rid not in self.sent_at or body.get("id") != rid:
                self.strays.append(f"reply {correlation!r} with id {body.get('id')!r}")
                return
            if rid not in self.replies:
                self.latency_ms[rid] = (now - self.sent_at[rid]) * 1000
            self.replies.setdefault(rid, []).append(Answer.of(body))
        else:
            rid = body.get("id")
            if not isinstance(rid, str) or rid not in self.sent_at:
                return  # someone else's command, or a retained answer from before
            self.responses.setdefault(rid, []).append(Answer.of(body))
        if self.answered(rid):
            self._completed.append(rid)  # again if duplicated: harmless for wait_all
            self._event.set()

    async def pump(self) -> None:
        async for message in self.client.messages:
            self._receive(message)


@contextlib.asynccontextmanager
async def requester(port: int, base: str = "modbus") -> AsyncIterator[Requester]:
    token = uuid.uuid4().hex[:8]
    async with aiomqtt.Client(
            "127.0.0.1", port, identifier=f"burst-{token}",
            protocol=aiomqtt.ProtocolVersion.V5,
            # paho's default of 20 in flight would be the bottleneck; burst() has a window
            # (and with a limit, paho scans all messages in flight per PUBACK).
            max_inflight_messages=0,
            # Without it each command waits ~40 ms (Nagle + delayed ACK, architecture.md).
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]) as client:
        client.pending_calls_threshold = WINDOW + 10  # many pending calls are on purpose
        req = Requester(client, base, token)
        client._client.on_publish = req.on_publish
        task = asyncio.create_task(req.pump(), name=f"burst[{token}]")
        await client.subscribe(req.reply_topic, qos=1)
        await client.subscribe(f"{base}/+/response", qos=1)
        try:
            yield req
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


@dataclass
class BurstReport:
    count: int
    publish_s: float  # until the broker acknowledged the last command
    total_s: float  # until the last answer (or the answer timeout)
    devices: dict[str, str]  # command id -> device
    replies: dict[str, list[Answer]]  # command id -> answers on the reply topic
    responses: dict[str, list[Answer]]  # command id -> answers on .../response
    latency_ms: list[float]  # publish call -> reply, per answered command
    strays: list[str]

    @property
    def rate(self) -> float:
        """Commands answered per second, over the whole burst."""
        return len(self.replies) / self.total_s if self.total_s > 0 else 0.0

    @property
    def duration_ms(self) -> list[float]:
        """The bridge's own duration_ms (message handled -> answer ready)."""
        return [answers[0].duration_ms for answers in self.replies.values()]

    def counts(self) -> dict[str, Counter[str]]:
        """Device -> code -> how many commands (first reply of each; `missing`: none)."""
        out: dict[str, Counter[str]] = {}
        for rid, device in self.devices.items():
            answers = self.replies.get(rid)
            out.setdefault(device, Counter())[answers[0].code if answers else "missing"] += 1
        return out

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for codes in self.counts().values():
            total.update(codes)
        return total

    def problems(self) -> list[str]:
        """Every broken promise: lost, duplicated, mismatched or unexpected answers."""
        found: list[str] = []
        for channel, answers in (("reply", self.replies), ("response", self.responses)):
            lost = [rid for rid in self.devices if rid not in answers]
            doubled = [rid for rid, got in answers.items() if len(got) != 1]
            if lost:
                found.append(f"{len(lost)} commands without a {channel}: {lost[:5]}")
            if doubled:
                found.append(f"{len(doubled)} commands with several {channel}s: {doubled[:5]}")
        wrong = Counter[str]()
        for rid, device in self.devices.items():
            for answer in self.replies.get(rid, []) + self.responses.get(rid, []):
                if answer.device != device:
                    problem = f"{device} answered as {answer.device}"
                elif answer.code not in ALLOWED_CODES[device]:
                    problem = f"{device}: {answer.code} ({answer.message})"
                elif answer.code == "ok" and answer.registers != EXPECTED_REGISTERS[device]:
                    problem = f"{device}: registers {answer.registers}"
                else:
                    continue
                wrong[problem] += 1
        found.extend(f"{n} x {problem}" for problem, n in wrong.most_common(10))
        found.extend(f"stray: {s}" for s in self.strays[:5])
        return found

    def __str__(self) -> str:
        counts = {device: dict(sorted(codes.items()))
                  for device, codes in sorted(self.counts().items())}
        return "\n".join([
            f"{self.count} commands published in {self.publish_s:.2f} s "
            f"({self.count / max(self.publish_s, 1e-9):.0f}/s acknowledged by the broker), "
            f"all answered after {self.total_s:.2f} s ({self.rate:.0f} commands/s)",
            f"codes: {dict(sorted(self.totals().items()))}",
            f"per device: {counts}",
            latency_line("latency (publish -> reply)", self.latency_ms),
            latency_line("bridge duration_ms", self.duration_ms),
        ])


async def burst(port: int, count: int, *, base: str = "modbus",
                mix: Sequence[tuple[str, int]] = MIX, window: int = WINDOW,
                answer_timeout: float = 60.0) -> BurstReport:
    """Publish `count` commands (QoS 1, one client, as fast as the broker acknowledges
    them, `window` unacknowledged at most) across `mix`, and collect every answer,
    waiting at most `answer_timeout` s in all."""
    async with requester(port, base) as req:
        ids = [req.new_id(n) for n in range(count)]
        work = iter(zip(plan(count, mix), ids, strict=True))

        async def sender() -> None:
            for device, rid in work:
                await req.send(device, rid, answer_timeout)

        started = time.perf_counter()
        # aiomqtt costs O(pending calls) per publish: 10,000 at once would be quadratic.
        async with asyncio.timeout(answer_timeout):
            await asyncio.gather(*(sender() for _ in range(min(window, count))))
        publish_s = time.perf_counter() - started
        await req.wait_all(ids, max(0.0, answer_timeout - publish_s))
        total_s = time.perf_counter() - started
        return BurstReport(
            count=count, publish_s=publish_s, total_s=total_s, devices=dict(req.device_of),
            replies=dict(req.replies), responses=dict(req.responses),
            latency_ms=list(req.latency_ms.values()), strays=list(req.strays))


async def sequential(port: int, count: int, device: str = "meter1", base: str = "modbus",
                     timeout: float = 5.0) -> list[float]:
    """Latency (ms, publish -> reply) of `count` commands sent one after another; each
    must succeed with the right registers within `timeout` s."""
    async with requester(port, base) as req:
        for n in range(count):
            rid = req.new_id(n)
            await req.send(device, rid, timeout)
            if not await req.wait_all([rid], timeout):
                raise AssertionError(f"no answer to {rid} ({device}) within {timeout} s")
            answer = req.replies[rid][0]
            if answer.code != "ok" or answer.registers != EXPECTED_REGISTERS[device]:
                raise AssertionError(f"{device} answered {answer}")
        return list(req.latency_ms.values())


class _PendingCallsWarnings(logging.Filter):
    """Counts (and hides) aiomqtt's "There are N pending publish calls." warnings: the
    bridge's client logs one per publish while more than 10 await their PUBACK."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "pending publish calls" in record.getMessage():
            self.count += 1
            return False
        return True


async def _main() -> None:
    parser = argparse.ArgumentParser(description="a burst of commands over MQTT")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--baseline", type=int, default=100,
                        help="sequential commands with no load, measured first")
    parser.add_argument("--queue-size", type=int, default=LOAD_BUS["queue_size"])
    parser.add_argument("--deadline", type=float, default=LOAD_BUS["command_deadline"],
                        help="bus command_deadline, seconds")
    parser.add_argument("--process", action="store_true",
                        help="run the bridge as its own process (`bridge run`), as deployed; "
                             "RSS is then the bridge's alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    pending_warnings = _PendingCallsWarnings()
    logging.getLogger("mqtt").addFilter(pending_warnings)  # aiomqtt's default logger
    from bridge.modbus.simulator import SimulatedLine
    from tests.broker import Mosquitto
    from tests.conftest import TcpGateway, meter_unit
    from tests.e2e import running_bridge

    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        gateway = TcpGateway([meter_unit(1), meter_unit(2)])
        await gateway.start()
        try:
            async with SimulatedLine([meter_unit(1), meter_unit(2)]) as line:
                bus = {"queue_size": args.queue_size, "command_deadline": args.deadline}
                config = load_config(broker.port, line.path, gateway.port, bus)
                if args.process:
                    await _run_separate(args, broker.port, config)
                    return
                async with running_bridge(config) as bridge:
                    await _measure(args, broker.port, settled_rss_mb, "bridge in this process")
                    print(f"handler tasks left: {len(bridge._handlers)}; online: "
                          f"{ {d: r.online for d, r in bridge.runners.items()} }; aiomqtt "
                          f"'pending publish calls' warnings: {pending_warnings.count}")
        finally:
            await gateway.stop()
            broker.stop()


async def _measure(args: argparse.Namespace, broker_port: int, rss: Callable[[], float],
                   where: str) -> None:
    """Wait for the healthy devices, then baseline, burst and after-burst figures."""
    from tests.broker import probe

    async with probe(broker_port, subscribe="modbus/+/availability") as watcher:
        for device in HEALTHY:
            await watcher.expect(f"modbus/{device}/availability",
                                 lambda m: m.text == "online", timeout=30)
    baseline = await sequential(broker_port, args.baseline)
    print(latency_line(f"baseline, {args.baseline} sequential commands to meter1, no load",
                       baseline))
    before = rss()
    report = await burst(broker_port, args.count)
    after = rss()
    print(f"burst ({where}): {MIX}, queue_size {args.queue_size}, command_deadline "
          f"{args.deadline:g} s")
    print(report)
    print(f"RSS before {before:.1f} MB, after {after:.1f} MB "
          f"({after - before:+.1f} MB)")
    problems = report.problems()
    print("problems: " + ("; ".join(problems) if problems else "none"))
    print(latency_line("after the burst, 20 sequential commands to meter1",
                       await sequential(broker_port, 20)))


async def _run_separate(args: argparse.Namespace, broker_port: int,
                        config: dict[str, Any]) -> None:
    """The burst against `python -m bridge run` in its own process: the bridge's event
    loop is not shared with this client and the simulators."""
    import signal
    import sys

    import yaml

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(config, file)
        file.flush()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "--config", file.name)
        try:
            await _measure(args, broker_port, lambda: rss_mb(proc.pid),
                           "bridge as its own process")
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


if __name__ == "__main__":
    asyncio.run(_main())
