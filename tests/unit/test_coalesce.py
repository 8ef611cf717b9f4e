"""Read coalescing (bridge/coalesce.py): which requests read which datapoints."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.coalesce import Block, Range, halve, plan, split
from bridge.core.points import Datapoint, DataType, Table

H, IN, C, D = Table.HOLDING, Table.INPUT, Table.COIL, Table.DISCRETE


def pt(name: str, address: int, table: Table = H, type_: DataType | None = None, *,
       bit: int | None = None, length: int | None = None) -> Datapoint:
    if type_ is None:
        type_ = DataType.BOOL if table.is_bits else DataType.UINT16
    return Datapoint(name=name, table=table, address=address, type=type_, bit=bit,
                     length=length)


def shape(blocks: list[Block]) -> list[tuple[Table, int, int, list[str]]]:
    """Blocks as (table, address, count, point names) for exact comparison."""
    return [(b.table, b.address, b.count, [p.name for p in b.points]) for b in blocks]


# -- merging -----------------------------------------------------------------------------

def test_nothing_to_read() -> None:
    assert plan([]) == []


def test_single_point() -> None:
    blocks = plan([pt("a", 7, type_=DataType.FLOAT64)])
    assert shape(blocks) == [(H, 7, 4, ["a"])]
    assert blocks[0].end == 11


def test_neighbours_within_max_gap_merge() -> None:
    points = [pt("a", 0), pt("b", 1, type_=DataType.INT32), pt("c", 5)]
    assert shape(plan(points)) == [(H, 0, 6, ["a", "b", "c"])]


@pytest.mark.parametrize(("max_gap", "second", "expected"), [
    (8, 9, [(H, 0, 10, ["a", "b"])]),                  # gap of exactly 8 unread registers
    (8, 10, [(H, 0, 1, ["a"]), (H, 10, 1, ["b"])]),   # gap of 9
    (0, 1, [(H, 0, 2, ["a", "b"])]),                   # adjacent
    (0, 2, [(H, 0, 1, ["a"]), (H, 2, 1, ["b"])]),
    (3, 4, [(H, 0, 5, ["a", "b"])]),
    (3, 5, [(H, 0, 1, ["a"]), (H, 5, 1, ["b"])]),
])
def test_max_gap(max_gap: int, second: int,
                 expected: list[tuple[Table, int, int, list[str]]]) -> None:
    assert shape(plan([pt("a", 0), pt("b", second)], max_gap=max_gap)) == expected


def test_default_max_gap_is_8() -> None:
    assert len(plan([pt("a", 0), pt("b", 9)])) == 1
    assert len(plan([pt("a", 0), pt("b", 10)])) == 2


def test_gap_counts_from_the_end_of_a_multi_register_point() -> None:
    # a spans 0..3; b at 6 leaves a gap of 2
    points = [pt("a", 0, type_=DataType.UINT64), pt("b", 6)]
    assert shape(plan(points, max_gap=2)) == [(H, 0, 7, ["a", "b"])]
    assert shape(plan(points, max_gap=1)) == [(H, 0, 4, ["a"]), (H, 6, 1, ["b"])]


def test_points_in_any_order_come_out_in_address_order() -> None:
    points = [pt("c", 20), pt("a", 0), pt("d", 40), pt("b", 2)]
    assert shape(plan(points)) == [(H, 0, 3, ["a", "b"]), (H, 20, 1, ["c"]), (H, 40, 1, ["d"])]


def test_a_chain_of_small_gaps_makes_one_block() -> None:
    points = [pt(f"p{i}", i * 5) for i in range(10)]   # 0, 5, ..., 45: gaps of 4
    assert shape(plan(points, max_gap=4)) == [(H, 0, 46, [f"p{i}" for i in range(10)])]


# -- Modbus limits -----------------------------------------------------------------------

def test_register_blocks_stop_at_125() -> None:
    assert shape(plan([pt("a", 0), pt("b", 124)], max_gap=200)) == [(H, 0, 125, ["a", "b"])]
    assert shape(plan([pt("a", 0), pt("b", 125)], max_gap=200)) == [
        (H, 0, 1, ["a"]), (H, 125, 1, ["b"])]


def test_a_point_that_would_cross_125_starts_a_new_block() -> None:
    points = [pt("a", 0), pt("b", 123, type_=DataType.INT32), pt("c", 124, type_=DataType.INT32)]
    assert shape(plan(points, max_gap=200)) == [(H, 0, 125, ["a", "b"]), (H, 124, 2, ["c"])]


def test_a_full_length_string_is_one_block() -> None:
    points = [pt("s", 0, type_=DataType.STRING, length=125), pt("b", 125)]
    assert shape(plan(points)) == [(H, 0, 125, ["s"]), (H, 125, 1, ["b"])]


def test_many_adjacent_registers_split_into_full_blocks() -> None:
    points = [pt(f"p{i}", i, IN) for i in range(300)]
    blocks = plan(points)
    assert [(b.address, b.count) for b in blocks] == [(0, 125), (125, 125), (250, 50)]
    assert all(b.table is IN for b in blocks)


@pytest.mark.parametrize("table", [C, D])
def test_bit_blocks_stop_at_2000(table: Table) -> None:
    assert shape(plan([pt("a", 0, table), pt("b", 1999, table)], max_gap=5000)) == [
        (table, 0, 2000, ["a", "b"])]
    assert shape(plan([pt("a", 0, table), pt("b", 2000, table)], max_gap=5000)) == [
        (table, 0, 1, ["a"]), (table, 2000, 1, ["b"])]


def test_many_adjacent_coils_split_at_2000() -> None:
    blocks = plan([pt(f"c{i}", i, C) for i in range(4500)])
    assert [(b.address, b.count, len(b.points)) for b in blocks] == [
        (0, 2000, 2000), (2000, 2000, 2000), (4000, 500, 500)]


def test_max_read() -> None:
    assert [t.max_read for t in (H, IN, C, D)] == [125, 125, 2000, 2000]


# -- tables ------------------------------------------------------------------------------

def test_tables_are_never_mixed() -> None:
    points = [pt("h", 0, H), pt("i", 0, IN), pt("c", 0, C), pt("d", 0, D),
              pt("h2", 1, H), pt("i2", 2, IN)]
    assert sorted(shape(plan(points))) == sorted([
        (H, 0, 2, ["h", "h2"]), (IN, 0, 3, ["i", "i2"]), (C, 0, 1, ["c"]), (D, 0, 1, ["d"])])


def test_neighbouring_addresses_in_other_tables_do_not_merge() -> None:
    blocks = plan([pt("h", 0, H), pt("i", 1, IN)])
    assert sorted(shape(blocks)) == [(H, 0, 1, ["h"]), (IN, 1, 1, ["i"])]


# -- overlapping points ------------------------------------------------------------------

def test_two_bit_flags_in_one_register_are_read_once() -> None:
    points = [pt("run", 10, type_=DataType.BOOL, bit=0),
              pt("fault", 10, type_=DataType.BOOL, bit=1),
              pt("temp", 11, type_=DataType.INT16)]
    blocks = plan(points)
    assert shape(blocks) == [(H, 10, 2, ["run", "fault", "temp"])]
    assert split(blocks[0], [0x0003, 0x00FF]) == {
        "run": [0x0003], "fault": [0x0003], "temp": [0x00FF]}


def test_a_point_inside_another_does_not_extend_the_block() -> None:
    points = [pt("wide", 10, type_=DataType.INT32), pt("low", 11)]
    assert shape(plan(points, max_gap=0)) == [(H, 10, 2, ["wide", "low"])]


def test_overlap_sorts_shorter_first_at_one_address() -> None:
    points = [pt("wide", 10, type_=DataType.UINT64), pt("flag", 10, type_=DataType.BOOL, bit=4)]
    assert shape(plan(points)) == [(H, 10, 4, ["flag", "wide"])]


# -- avoided ranges ----------------------------------------------------------------------

def test_never_merges_across_an_avoided_gap() -> None:
    points = [pt("a", 0), pt("b", 2), pt("c", 4), pt("d", 6)]
    assert shape(plan(points)) == [(H, 0, 7, ["a", "b", "c", "d"])]
    assert shape(plan(points, avoid=[(H, 3, 4)])) == [
        (H, 0, 3, ["a", "b"]), (H, 4, 3, ["c", "d"])]


def test_avoided_range_touching_one_register_of_the_gap() -> None:
    points = [pt("a", 0), pt("b", 2)]
    assert shape(plan(points, avoid=[(H, 1, 2)])) == [(H, 0, 1, ["a"]), (H, 2, 1, ["b"])]


def test_a_point_inside_an_avoided_range_is_read_alone() -> None:
    points = [pt("a", 0), pt("b", 2), pt("bad", 4), pt("c", 6), pt("d", 7)]
    assert shape(plan(points, avoid=[(H, 4, 5)])) == [
        (H, 0, 3, ["a", "b"]), (H, 4, 1, ["bad"]), (H, 6, 2, ["c", "d"])]


def test_points_sharing_an_avoided_range_are_each_read_alone() -> None:
    points = [pt("x", 4), pt("y", 5), pt("z", 20)]
    assert shape(plan(points, avoid=[(H, 3, 7)])) == [
        (H, 4, 1, ["x"]), (H, 5, 1, ["y"]), (H, 20, 1, ["z"])]


def test_avoided_range_ends_are_exclusive() -> None:
    points = [pt("a", 0), pt("b", 1)]
    assert shape(plan(points, avoid=[(H, 2, 10)])) == [(H, 0, 2, ["a", "b"])]
    assert shape(plan(points, avoid=[(H, 100, 110)])) == [(H, 0, 2, ["a", "b"])]


def test_avoided_range_of_another_table_is_ignored() -> None:
    points = [pt("a", 0), pt("b", 2)]
    assert shape(plan(points, avoid=[(IN, 1, 2), (C, 0, 3)])) == [(H, 0, 3, ["a", "b"])]


def test_avoid_accepts_any_iterable() -> None:
    points = [pt("a", 0), pt("b", 2)]
    avoid: set[Range] = {(H, 1, 2)}
    assert len(plan(points, avoid=avoid)) == 2
    assert len(plan(points, avoid=iter([(H, 1, 2)]))) == 2


# -- split -------------------------------------------------------------------------------

def test_split_gives_each_point_its_slice() -> None:
    points = [pt("a", 10), pt("b", 12, type_=DataType.INT32),
              pt("s", 15, type_=DataType.STRING, length=3)]
    (block,) = plan(points)
    assert (block.address, block.count, block.end) == (10, 8, 18)
    data = [100, 101, 102, 103, 104, 105, 106, 107]
    assert split(block, data) == {"a": [100], "b": [102, 103], "s": [105, 106, 107]}


def test_split_bits() -> None:
    (block,) = plan([pt("x", 3, C), pt("y", 5, C)])
    assert split(block, [True, False, False]) == {"x": [True], "y": [False]}


# -- halve -------------------------------------------------------------------------------

def test_halve_four_points() -> None:
    (block,) = plan([pt("a", 0), pt("b", 1), pt("c", 5), pt("d", 6)])
    halves = halve(block)
    assert shape(halves) == [(H, 0, 2, ["a", "b"]), (H, 5, 2, ["c", "d"])]
    assert halves[0].end == 2
    assert halves[1].end == 7


def test_halve_three_points() -> None:
    (block,) = plan([pt("a", 0), pt("b", 3), pt("c", 8, type_=DataType.INT32)])
    assert shape(halve(block)) == [(H, 0, 1, ["a"]), (H, 3, 7, ["b", "c"])]


def test_halve_two_flags_in_one_register() -> None:
    (block,) = plan([pt("f0", 4, type_=DataType.BOOL, bit=0),
                     pt("f1", 4, type_=DataType.BOOL, bit=1)])
    assert shape(halve(block)) == [(H, 4, 1, ["f0"]), (H, 4, 1, ["f1"])]


def test_halve_a_lone_point_stays() -> None:
    (block,) = plan([pt("a", 9, IN, DataType.FLOAT32)])
    assert halve(block) == [block]
    assert halve(block)[0] is block


def test_halving_down_to_single_points() -> None:
    blocks = plan([pt(f"p{i}", 2 * i, D) for i in range(5)])
    pending, singles = list(blocks), []
    while pending:
        block = pending.pop()
        halves = halve(block)
        if halves == [block]:
            singles.append(block)
        else:
            pending.extend(halves)
    assert sorted((b.address, b.count, b.table) for b in singles) == [
        (2 * i, 1, D) for i in range(5)]


# -- Block -------------------------------------------------------------------------------

def test_block_end_and_of() -> None:
    block = Block.of([pt("b", 20, IN, DataType.INT32), pt("a", 14, IN)])
    assert (block.table, block.address, block.count, block.end) == (IN, 14, 8, 22)
    assert [p.name for p in block.points] == ["b", "a"]
    assert Block(C, 100, 16, ()).end == 116


# -- property ----------------------------------------------------------------------------

TYPES = [DataType.UINT16, DataType.INT32, DataType.FLOAT64, DataType.STRING]


@st.composite
def point_sets(draw: st.DrawFn) -> list[Datapoint]:
    """Non-overlapping datapoints over all four tables, in random order."""
    points: list[Datapoint] = []
    next_free = dict.fromkeys(Table, 0)
    specs = draw(st.lists(st.tuples(st.sampled_from(list(Table)), st.integers(0, 130),
                                    st.sampled_from(TYPES), st.integers(1, 125)),
                          max_size=40))
    for i, (table, gap, type_, length) in enumerate(specs):
        address = next_free[table] + gap
        if table.is_bits:
            point = pt(f"p{i}", address, table)
        elif type_ is DataType.STRING:
            point = pt(f"p{i}", address, table, type_, length=length)
        else:
            point = pt(f"p{i}", address, table, type_)
        next_free[table] = point.end
        points.append(point)
    return draw(st.permutations(points))


avoid_ranges = st.lists(
    st.tuples(st.sampled_from(list(Table)), st.integers(0, 3000), st.integers(1, 50)).map(
        lambda t: (t[0], t[1], t[1] + t[2])),
    max_size=4)


@given(points=point_sets(), max_gap=st.integers(0, 150), avoid=avoid_ranges)
@settings(max_examples=150, deadline=None)
def test_plan_covers_every_point_exactly_once_within_limits(
        points: list[Datapoint], max_gap: int, avoid: list[Range]) -> None:
    blocks = plan(points, max_gap=max_gap, avoid=avoid)
    planned = Counter(p.name for b in blocks for p in b.points)
    assert planned == Counter(p.name for p in points)
    assert all(n == 1 for n in planned.values())
    for block in blocks:
        assert block.points
        assert 1 <= block.count <= block.table.max_read
        assert block.end == block.address + block.count
        assert all(p.table is block.table for p in block.points)
        assert all(block.address <= p.address and p.end <= block.end for p in block.points)
        # tight: the block starts at its first point and ends with its last
        assert block.address == min(p.address for p in block.points)
        assert block.end == max(p.end for p in block.points)
        if len(block.points) > 1:
            assert not any(t is block.table and a < block.end and block.address < b
                           for t, a, b in avoid)
            spans = sorted((p.address, p.end) for p in block.points)
            assert all(nxt[0] - prev[1] <= max_gap for prev, nxt in pairwise(spans))
        data = list(range(block.address, block.end))
        for name, part in split(block, data).items():
            point = next(p for p in block.points if p.name == name)
            assert list(part) == list(range(point.address, point.end))
    # blocks of one table are in address order and never overlap (the points do not)
    for table in Table:
        mine = [b for b in blocks if b.table is table]
        assert all(a.end <= b.address for a, b in pairwise(mine))
