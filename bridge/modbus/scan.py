"""Bus scan: probe unit ids one at a time through a port's bus, at poll priority.

Probes go through the same queue as everything else on the port, so the bus's
rules hold: commands to devices go first and frames keep their gap. Probes are
queued one at a time: a poll of a healthy unit that arrives during a scan waits
for at most the one probe in front of it (its timeout), never for the whole scan.

After a silent id the line is not kept quiet for another timeout (as the bus does
after a unit that used to answer): an id nobody ever answered on is nearly always
absent, and a late reply from a unit slower than the scan's timeout carries that
unit's id, which pymodbus refuses as the next probe's answer. Such a slow unit
(and at worst the id probed after it) shows as absent: scan again with a longer
--timeout. This halves a scan (247 ids at 0.2 s: ~50 s instead of ~100 s).

A unit that the bus is backing off from (a configured device that stopped
answering) is not probed but reported `skipped`: its polls already tell whether
it is there, and waiting out its back-off could stall the scan for a minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from bridge.core.availability import Outcome, outcome_of
from bridge.core.errors import BusError, ModbusExceptionError, PortUnavailable
from bridge.core.points import Table
from bridge.core.scan import Found, ScanReport
from bridge.core.transport import SerialLine, Transport
from bridge.modbus.bus import Bus, Priority
from bridge.modbus.registry import ClientRegistry

Progress = Callable[[int, int, Found], None]  # (done, total, latest)


async def probe(bus: Bus, unit: int, timeout: float) -> Found:
    """One small read; what came back says whether a unit is there."""
    started = time.monotonic()
    # An id the bus has never talked to is nearly always absent: no line silence
    # after its timeout, so a scan costs one timeout per silent id. A unit of a
    # configured device may be slow: its probe keeps the bus's usual silence.
    known = unit in bus.units
    if known and bus.health(unit).backing_off(started):
        return Found(unit, "skipped")
    try:
        return await _probe(bus, unit, timeout, started, known)
    finally:
        if not known:  # a probe must not make an unused id count as a served unit
            bus.forget(unit)


async def _probe(bus: Bus, unit: int, timeout: float, started: float, known: bool) -> Found:
    try:
        # The probe must not wait behind its own unit's back-off (it was checked
        # above) nor for longer than a few probes behind device commands.
        registers = await bus.read(unit, Table.HOLDING, 0, 1, priority=Priority.POLL,
                                   timeout=timeout, retries=0, settle=known,
                                   deadline=started + max(10 * timeout, 2.0))
    except BusError as exc:
        ms = (time.monotonic() - started) * 1000
        code = exc.exception_code if isinstance(exc, ModbusExceptionError) else None
        outcome = outcome_of(exc)
        if outcome is Outcome.DOWN:
            raise
        if outcome is Outcome.NOT_ASKED:  # queue full or waited too long behind commands
            return Found(unit, "skipped", ms=ms)
        if outcome is Outcome.ANSWERED:  # an exception response: somebody is there
            return Found(unit, "exception", code, ms=ms)
        return Found(unit, "absent", code, ms=ms)  # silence, garbage, gateway 0A/0B
    return Found(unit, "data", registers=tuple(int(r) for r in registers),
                 ms=(time.monotonic() - started) * 1000)


async def scan_bus(bus: Bus, units: Iterable[int], *, timeout: float,
                   budget: float | None = None, progress: Progress | None = None) -> ScanReport:
    """Probe `units` in order. Ends early (saying why) when the port is lost or the
    time `budget` (seconds) runs out; what was found until then is reported."""
    todo = list(units)
    report = ScanReport(bus.name, timeout)
    started = time.monotonic()
    try:
        for unit in todo:
            if budget is not None and time.monotonic() - started > budget:
                report.stopped = f"time budget of {budget:g} s used up"
                break
            try:
                found = await probe(bus, unit, timeout)
            except PortUnavailable as exc:
                report.stopped = exc.message
                break
            report.results.append(found)
            if progress is not None:
                progress(len(report.results), len(todo), found)
    finally:
        report.seconds = time.monotonic() - started
    return report


def scan_budget(units: int, timeout: float) -> float:
    """Seconds a scan may take: each probe's timeout and the silence after it, with
    room for the device traffic that goes first."""
    return units * (2 * timeout + 0.05) * 1.5 + 5.0


async def scan_transport(transport: Transport, units: Iterable[int], *, timeout: float,
                         progress: Progress | None = None) -> ScanReport:
    """Scan a port the bridge does not run (`bridge scan`): its own client and bus."""
    registry = ClientRegistry(backoff_max=timeout)
    try:
        wrapper = registry.register(transport, "scan")
        await wrapper.connect_async("scan")  # PortUnavailable says why it cannot open
        report = await scan_bus(wrapper.bus, units, timeout=timeout, progress=progress)
        # As the user typed it, not the /dev/pts/N or ttyUSB0 a link resolves to.
        report.port = transport.port if isinstance(transport, SerialLine) else transport.key
        return report
    finally:
        await asyncio.shield(registry.close())
