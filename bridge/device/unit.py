"""One unit on a port: datapoints read (coalesced) and written through the port's bus."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.core import coalesce, codec
from bridge.core.availability import Outcome, outcome_of
from bridge.core.commands import WritePoints
from bridge.core.errors import (
    BridgeError,
    ModbusExceptionError,
    UnknownDatapoint,
)
from bridge.core.points import Datapoint, DataType, Table, Value
from bridge.modbus.bus import Bus, Priority

ILLEGAL_ADDRESS = 2


@dataclass
class ReadResult:
    """Values read, and per datapoint the error of those that could not be read."""

    values: dict[str, Value | None] = field(default_factory=dict)  # None: NaN read
    errors: dict[str, BridgeError] = field(default_factory=dict)


class Device:
    """A Modbus unit and its datapoints, talking through its port's bus."""

    def __init__(self, device_id: str, unit: int, bus: Bus, points: Iterable[Datapoint], *,
                 timeout: float = 0.5, retries: int = 1, max_gap: int = 8) -> None:
        self.id = device_id
        self.unit = unit
        self.bus = bus
        self.points: dict[str, Datapoint] = {p.name: p for p in points}
        self.timeout = timeout
        self.retries = retries
        self.max_gap = max_gap
        # Ranges that answered "illegal data address": later reads never span them.
        self.avoid: set[tuple[Table, int, int]] = set()
        # Constants (SGr dataDirection C) already read: polls leave them out.
        self.constants_known: set[str] = set()
        # The poll's plan, kept while `avoid` and `constants_known` (which only grow)
        # stay as they were: planning 50 datapoints per poll was a visible share of CPU.
        self._poll_plan: tuple[tuple[int, int], list[coalesce.Block]] | None = None

    def _kw(self, priority: Priority, deadline: float | None) -> dict[str, Any]:
        return {"priority": priority, "timeout": self.timeout, "retries": self.retries,
                "deadline": deadline}

    def select(self, names: Sequence[str] | None) -> list[Datapoint]:
        if names is None:  # a poll: write-only points and constants known are not read
            return [p for p in self.points.values()
                    if p.readable and p.name not in self.constants_known]
        unknown = [n for n in names if n not in self.points]
        if unknown:
            raise UnknownDatapoint(f"device {self.id} has no datapoint {unknown[0]!r}",
                                   field=unknown[0])
        return [self.points[n] for n in names]

    # -- reads ---------------------------------------------------------------

    async def read_points(self, names: Sequence[str] | None = None, *,
                          priority: Priority = Priority.COMMAND,
                          deadline: float | None = None) -> ReadResult:
        """Read datapoints in as few requests as possible.

        A block answered with exception 2 is split and retried; the gap that caused it
        is remembered. A failed transaction (timeout, port error, a gateway's
        exception 10/11) ends the read and is raised: the unit is not there. Other
        exception responses are recorded per datapoint.
        """
        result = ReadResult()
        if names is None:
            key = (len(self.avoid), len(self.constants_known))
            if self._poll_plan is None or self._poll_plan[0] != key:
                self._poll_plan = (key, coalesce.plan(self.select(None), max_gap=self.max_gap,
                                                      avoid=self.avoid))
            blocks = self._poll_plan[1]
        else:
            blocks = coalesce.plan(self.select(names), max_gap=self.max_gap, avoid=self.avoid)
        for block in blocks:
            await self._read_block(block, result, priority, deadline)
        self.constants_known.update(
            name for name in result.values if self.points[name].constant)
        return result

    async def _read_block(self, block: coalesce.Block, result: ReadResult,
                          priority: Priority, deadline: float | None) -> None:
        try:
            raw = await self.bus.read(self.unit, block.table, block.address, block.count,
                                      **self._kw(priority, deadline))
        except ModbusExceptionError as exc:
            if outcome_of(exc) is Outcome.FAILED:
                raise  # a gateway says the unit is unreachable: the read failed, as a timeout
            if exc.exception_code != ILLEGAL_ADDRESS:
                result.errors.update((p.name, exc) for p in block.points)
                return
            if len(block.points) == 1:
                self.avoid.add((block.table, block.address, block.address + block.count))
                result.errors[block.points[0].name] = exc
                return
            halves = coalesce.halve(block)
            for half in halves:
                await self._read_block(half, result, priority, deadline)
            # Both halves answered: the unread gap between them is what the unit refused.
            left, right = halves[0], halves[-1]
            if not any(p.name in result.errors for p in block.points) and left.end < right.address:
                self.avoid.add((block.table, left.end, right.address))
            return
        for name, data in coalesce.split(block, raw).items():
            try:
                result.values[name] = codec.decode(self.points[name], data)
            except BridgeError as exc:
                result.errors[name] = exc

    async def read_raw(self, table: Table, address: int, count: int, *,
                       deadline: float | None = None) -> list[int] | list[bool]:
        return await self.bus.read(self.unit, table, address, count,
                                   **self._kw(Priority.COMMAND, deadline))

    # -- writes --------------------------------------------------------------

    async def write_raw(self, table: Table, address: int,
                        values: Sequence[int] | Sequence[bool], *, single: bool,
                        deadline: float | None = None) -> None:
        await self.bus.write(self.unit, table, address, values, single=single,
                             **self._kw(Priority.COMMAND, deadline))

    async def write_points(self, command: WritePoints, *,
                           deadline: float | None = None) -> ReadResult:
        """Write datapoints (checked and encoded when the command was parsed), then read
        them back: the result is what the device reports."""
        kw = self._kw(Priority.COMMAND, deadline)
        for name, data in command.encoded.items():
            point = self.points[name]
            if point.bit is not None:
                # A flag inside a register: read-modify-write, other bits unchanged.
                (current,) = await self.bus.read(self.unit, point.table, point.address, 1, **kw)
                data = (codec.set_bit(int(current), point.bit, values_bool(data, point)),)
            elif point.mask is not None:
                # A field inside a register (a value map under a mask): likewise.
                current_words = await self.bus.read(self.unit, point.table, point.address,
                                                    point.count, **kw)
                data = tuple(codec.under_mask(point, [int(w) for w in current_words],
                                              [int(w) for w in data]))
            await self.bus.write(self.unit, point.table, point.address, data,
                                 single=len(data) == 1, **kw)
        # Write-only points cannot be read back: the result leaves them out.
        readable = [name for name in command.encoded if self.points[name].readable]
        if not readable:
            return ReadResult()
        return await self.read_points(readable, deadline=deadline)


def values_bool(data: Sequence[int] | Sequence[bool], point: Datapoint) -> bool:
    """The flag an encoded bit datapoint carries (encode sets only that bit)."""
    assert point.type is DataType.BOOL and point.bit is not None
    return bool(int(data[0]) >> point.bit & 1)

