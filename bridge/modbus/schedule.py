"""The waiting transactions of one port, and the order they go on the line.

- commands (from MQTT) go ahead of polls; within a priority, first come first served;
- an item whose deadline passed while it waited is answered `expired` and never sent;
- past `queue_size` waiting items, or past a unit's fair share of them
  (`queue_size` divided by the units the port serves), a new item is refused `busy`,
  so one device flooding its port cannot lock its neighbours out;
- a unit that stopped answering backs off: its polls and retries wait until its
  `ready_at`, while units that answer go first. A command's first attempt still goes
  out (after the waiting items of units that answer), so a person gets a real answer.

Pure bookkeeping plus one wait: the bus's worker asks `next()` for the item to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from bridge.core.errors import Busy, Expired, PortUnavailable

Raw = list[int] | list[bool]


class Priority(IntEnum):
    COMMAND = 0
    POLL = 1


@dataclass
class UnitHealth:
    """Failure bookkeeping of one unit on this port."""

    failures: int = 0  # consecutive failed transactions
    ready_at: float = 0.0  # monotonic time before which polls and retries wait

    def backing_off(self, now: float) -> bool:
        return now < self.ready_at


@dataclass(eq=False)
class Item:
    priority: int
    seq: int  # order within a priority
    unit: int = field(compare=False)
    run: Callable[[Any], Awaitable[Raw | None]] = field(compare=False)
    future: asyncio.Future[Raw | None] = field(compare=False)
    deadline: float | None = field(compare=False)
    timeout: float = field(compare=False)
    attempts_left: int = field(compare=False)
    first_attempt: bool = field(compare=False, default=True)
    settle: bool = field(compare=False, default=True)


class Schedule:
    """One port's queue: admission (busy, fair shares), order, expiry, back-off."""

    def __init__(self, name: str, queue_size: int,
                 on_expired: Callable[[Item], None]) -> None:
        self.name = name
        self.queue_size = queue_size
        self.units: dict[int, UnitHealth] = {}
        self._on_expired = on_expired  # counted by the bus's stats
        # (priority, seq, item): tuples compare in C, a dataclass's order in Python (the
        # fallback scan sorts the queue while a unit backs off: ~40 comparisons per item).
        self._heap: list[tuple[int, int, Item]] = []
        self._queued: Counter[int] = Counter()  # unit -> items waiting
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def health(self, unit: int) -> UnitHealth:
        health = self.units.get(unit)
        if health is None:
            health = self.units[unit] = UnitHealth()
        return health

    def share(self, unit: int) -> int:
        """How many waiting items one unit may hold: an equal part of the queue among
        the units this port has served (each device polls or is asked soon after
        start, so all of them count)."""
        return max(1, self.queue_size // (len(self.units) + (unit not in self.units)))

    def queued(self, unit: int) -> int:
        """Items waiting for one unit."""
        return self._queued[unit]

    def forget(self, unit: int) -> bool:
        """Drop a unit's bookkeeping when nothing of it waits; True if dropped."""
        if self.queued(unit):
            return False
        self.units.pop(unit, None)
        return True

    def add(self, unit: int, run: Callable[[Any], Awaitable[Raw | None]], *,
            priority: Priority, deadline: float | None, timeout: float, retries: int,
            settle: bool) -> Item:
        """Queue a new item, or raise Busy (the queue or the unit's share is full)."""
        if len(self._heap) >= self.queue_size:
            raise Busy(f"queue of {self.name} is full ({self.queue_size} waiting)")
        self.health(unit)  # known from now on: it counts in every unit's share
        share = self.share(unit)
        if self._queued[unit] >= share:
            raise Busy(f"unit {unit} holds its share of the queue of {self.name} "
                       f"({share} of {self.queue_size} waiting)")
        future: asyncio.Future[Raw | None] = asyncio.get_running_loop().create_future()
        item = Item(int(priority), next(self._seq), unit, run, future, deadline, timeout,
                    retries, settle=settle)
        self._push(item)
        self._wake.set()
        return item

    def _push(self, item: Item) -> None:
        heapq.heappush(self._heap, (item.priority, item.seq, item))
        self._queued[item.unit] += 1

    def _remove(self, entry: tuple[int, int, Item]) -> Item:
        self._heap.remove(entry)
        self._queued[entry[2].unit] -= 1
        return entry[2]

    def requeue(self, item: Item) -> None:
        """Queue a retry at the back of its priority class; it waits for the unit's
        back-off like a poll does."""
        if item.future.done():  # the caller went away
            return
        item.attempts_left -= 1
        item.first_attempt = False
        item.seq = next(self._seq)
        self._push(item)

    def drain(self, reason: str) -> None:
        """Answer every waiting item port_unavailable with `reason`."""
        items, self._heap = [entry[2] for entry in self._heap], []
        self._queued.clear()
        for item in items:
            if not item.future.done():
                item.future.set_exception(PortUnavailable(reason))
        self._wake.set()

    async def next(self) -> Item:
        """The best eligible item; waits while every waiting item is backing off."""
        while True:
            now = time.monotonic()
            if self._heap:
                # Nearly always the first in order can go: take it in O(log n). The
                # scan below (sorting the whole queue) made 500 queued commands cost
                # ~1 s of CPU; it gives the same answer whenever the head is eligible.
                head = self._heap[0][2]
                if not head.future.done() and (head.deadline is None or now < head.deadline) \
                        and not self.health(head.unit).backing_off(now):
                    heapq.heappop(self._heap)
                    self._queued[head.unit] -= 1
                    return head
            wake_at: float | None = None
            fallback: tuple[int, int, Item] | None = None
            for entry in sorted(self._heap):
                item = entry[2]
                if item.future.done():  # the caller went away
                    self._remove(entry)
                    continue
                if item.deadline is not None and now >= item.deadline:
                    self._remove(entry)
                    self._on_expired(item)
                    item.future.set_exception(Expired("deadline passed while queued"))
                    continue
                health = self.health(item.unit)
                if not health.backing_off(now):
                    return self._take(entry)
                if item.priority == Priority.COMMAND and item.first_attempt:
                    fallback = fallback or entry
                    continue
                wake_at = health.ready_at if wake_at is None else min(wake_at, health.ready_at)
                if item.deadline is not None:
                    wake_at = min(wake_at, item.deadline)
            if fallback is not None:
                return self._take(fallback)
            heapq.heapify(self._heap)
            self._wake.clear()
            if wake_at is None:  # an idle port: the next item wakes it
                await self._wake.wait()
                continue
            # asyncio.timeout, not wait_for: no task per wait (one loop turn less per
            # transaction on an idle port).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake_at - time.monotonic())):
                    await self._wake.wait()

    def _take(self, entry: tuple[int, int, Item]) -> Item:
        item = self._remove(entry)
        heapq.heapify(self._heap)
        return item
