"""Read coalescing: a device's datapoints in as few requests as possible. Pure.

Datapoints of one table that lie within `max_gap` registers (or bits) of each
other are read in one request, up to the Modbus limit of 125 registers or 2000
bits. Ranges a unit refused (exception 2, "illegal data address") are passed
in as `avoid`; a merged block never touches one, so a point inside such a range
is read on its own and the rest keep being read together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridge.core.points import Datapoint, Table

Range = tuple[Table, int, int]  # table, first address, one past the last


@dataclass(frozen=True)
class Block:
    """One read request and the datapoints it carries."""

    table: Table
    address: int
    count: int
    points: tuple[Datapoint, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    @classmethod
    def of(cls, points: Sequence[Datapoint]) -> Block:
        start = min(p.address for p in points)
        end = max(p.end for p in points)
        return cls(points[0].table, start, end - start, tuple(points))


def plan(points: Iterable[Datapoint], *, max_gap: int = 8,
         avoid: Iterable[Range] = ()) -> list[Block]:
    """Blocks covering every point: per table, in address order."""
    avoided = list(avoid)
    blocks: list[Block] = []
    by_table: dict[Table, list[Datapoint]] = {}
    for point in points:
        by_table.setdefault(point.table, []).append(point)
    for table, members in by_table.items():
        members.sort(key=lambda p: (p.address, p.end))
        group: list[Datapoint] = []
        start = end = 0
        for point in members:
            new_end = max(end, point.end)
            if group and (point.address - end <= max_gap
                          and new_end - start <= table.max_read
                          and not _touches(avoided, table, start, new_end)
                          and not _touches(avoided, table, point.address, point.end)):
                group.append(point)
                end = new_end
                continue
            if group:
                blocks.append(Block.of(group))
            group, start, end = [point], point.address, point.end
        if group:
            blocks.append(Block.of(group))
    return blocks


def _touches(avoided: list[Range], table: Table, start: int, end: int) -> bool:
    return any(t is table and a < end and start < b for t, a, b in avoided)


Words = Sequence[int] | Sequence[bool]


def split(block: Block, data: Words) -> dict[str, Words]:
    """Each point's own registers (or bits) out of the block's data."""
    return {p.name: data[p.address - block.address:p.end - block.address] for p in block.points}


def halve(block: Block) -> list[Block]:
    """Two smaller blocks with half the points each (a lone point stays alone)."""
    if len(block.points) < 2:
        return [block]
    middle = len(block.points) // 2
    return [Block.of(block.points[:middle]), Block.of(block.points[middle:])]
