"""One port's worker: one Modbus transaction at a time, in the schedule's order.

Every request for a port (serial line or TCP endpoint) is an item in its
schedule; a single worker task takes them one by one and runs them on the port's
pymodbus client:

- the order, admission (`busy`, fair shares), expiry and back-off waits are the
  port's `Schedule` (schedule.py); a unit that stopped answering backs off (one
  timeout, doubling, capped). Only a unit that was answering is retried at all;
  one already failing gets one attempt per request;
- the line is kept silent for `frame_gap` between frames (pymodbus does not do
  it, #2911), and after the first timeout of a unit that used to answer for one
  more timeout, so a late reply cannot be taken for the next request's answer
  (RTU has no transaction id; pymodbus PR #2636);
- pymodbus runs with retries=0 and never closes the port for missed replies
  (set_max_no_responses): retries and back-off are ours, per unit (#3012);
- a port that is down is reopened with capped back-off; meanwhile items fail
  at once with `port_unavailable`;
- exception responses: 05 (acknowledge) to a write is success; 06 (busy) is
  retried after one timeout within the item's retries; 0A/0B (gateway: unit
  unreachable) count as failures like a timeout; the others are reported.

The pymodbus calls themselves, and the translation of their failures into
`errors.BusError` subclasses, are in `calls.py`; what a failure means for the
unit is `core.availability.outcome_of`, shared with the device's availability.
Its length (~330 lines, half of it this policy) is one state machine: the worker,
the port's reopening and what each attempt's outcome does to the unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bridge.core.availability import Outcome, outcome_of
from bridge.core.errors import (
    BusError,
    Busy,
    Expired,
    InternalError,
    ModbusExceptionError,
    ModbusTimeout,
    PortUnavailable,
)
from bridge.core.points import Table
from bridge.core.ratelimit import LogBudget, held_note
from bridge.core.stats import PortStats, error_key
from bridge.core.transport import SERIAL_UNITS
from bridge.modbus.calls import SERVER_BUSY, Raw, read_call, transact, write_call
from bridge.modbus.schedule import Item, Priority, Schedule, UnitHealth

log = logging.getLogger(__name__)


class Bus:
    """The queue and worker of one port. `opener` (re)opens the port or raises PortUnavailable."""

    def __init__(
        self,
        name: str,
        client: Any,
        opener: Callable[[], Awaitable[None]],
        *,
        queue_size: int = 256,
        frame_gap: float = 0.0,
        backoff_max: float = 60.0,
        reopen_min: float = 0.2,
        reopen_max: float = 10.0,
        units: range = SERIAL_UNITS,
        gone: Callable[[], str | None] | None = None,
    ) -> None:
        self.name = name
        self.unit_ids = units  # addressable unit ids: the transport's (transport.units)
        # Why the port's device file vanished, if it did: an unplugged adapter whose
        # end of file pyserial has not reported yet looks like a unit that times out.
        self._gone = gone
        self.client = client
        self._opener = opener
        self.frame_gap = frame_gap
        self.backoff_max = backoff_max
        self._reopen_min = reopen_min
        self._reopen_max = reopen_max
        self._reopen_delay = reopen_min
        self._reopen_at = 0.0
        self._port_error: PortUnavailable | None = None
        self.schedule = Schedule(name, queue_size,
                                 lambda item: self.stats.refused(item.unit, Expired.code))
        self._worker: asyncio.Task[None] | None = None
        self._current: Item | None = None  # the transaction on the wire
        self._stopped: str | None = None  # why submits are refused (stop())
        self._budget = LogBudget(burst=10, period=60.0)  # a flapping port's log lines
        self._quiet_until = 0.0  # the line must stay silent until then
        self.stats = PortStats()  # read by the health topic and the metrics
        self._opened = False

    # -- submitting ---------------------------------------------------------

    @property
    def queue_size(self) -> int:
        return self.schedule.queue_size

    @queue_size.setter
    def queue_size(self, size: int) -> None:
        self.schedule.queue_size = size

    @property
    def units(self) -> dict[int, UnitHealth]:
        return self.schedule.units

    def health(self, unit: int) -> UnitHealth:
        return self.schedule.health(unit)

    async def read(self, unit: int, table: Table, address: int, count: int, **kw: Any) -> Raw:
        call = read_call(unit, self.unit_ids, table, address, count)
        result = await self.submit(unit, call, **kw)
        assert result is not None
        return result

    async def write(
        self, unit: int, table: Table, address: int, values: Sequence[int] | Sequence[bool],
        *, single: bool = False, **kw: Any,
    ) -> None:
        call = write_call(unit, self.unit_ids, table, address, values, single)
        await self.submit(unit, call, **kw)

    async def submit(
        self,
        unit: int,
        run: Callable[[Any], Awaitable[Raw | None]],
        *,
        priority: Priority = Priority.COMMAND,
        timeout: float = 0.5,
        retries: int = 0,
        deadline: float | None = None,
        settle: bool = True,
    ) -> Raw | None:
        """Queue one transaction and wait for its outcome; raises BusError subclasses.

        `settle=False`: no line silence after this transaction's timeout even if the
        unit never failed before: for scan probes of ids nobody has answered on, which
        are nearly always absent (pymodbus rejects a late reply that carries another
        unit's id, so it cannot pass for the next unit's answer)."""
        if self._stopped is not None:
            raise PortUnavailable(self._stopped)
        try:
            item = self.schedule.add(unit, run, priority=priority, deadline=deadline,
                                     timeout=timeout, retries=retries, settle=settle)
        except Busy:
            self.stats.refused(unit, Busy.code)
            raise
        self._ensure_worker()
        return await item.future

    # -- the worker ------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name=f"bus[{self.name}]")

    def stop(self, reason: str) -> None:
        """Refuse new transactions and answer every waiting one, the one on the wire
        included, port_unavailable with `reason` at once: at shutdown each command in
        flight gets its one answer while the MQTT link is still up to carry it."""
        self._stopped = reason
        current = self._current
        if current is not None and not current.future.done():
            current.future.set_exception(PortUnavailable(reason))
        self.schedule.drain(reason)

    async def close(self, reason: str = "port closed") -> None:
        """Stop the worker; everything still queued is answered port_unavailable."""
        if self._current is not None and not self._current.future.done():
            self._current.future.set_exception(PortUnavailable(f"{self.name}: {reason}"))
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self.schedule.drain(f"{self.name}: {reason}")

    async def _work(self) -> None:
        while True:
            item = await self.schedule.next()
            self._current = item
            try:
                await self._run(item)
            except Exception as exc:  # never let one item kill the port's worker
                log.exception("bus[%s]: unexpected error", self.name)
                if not item.future.done():
                    item.future.set_exception(
                        InternalError(f"unexpected {type(exc).__name__}: {exc}"))
            finally:
                self._current = None

    async def _run(self, item: Item) -> None:
        try:
            await self._ensure_open()
        except PortUnavailable as exc:
            self.stats.refused(item.unit, exc.code)
            self._finish(item, exc)
            return
        delay = self._quiet_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        health = self.health(item.unit)
        started = time.monotonic()
        try:
            result = await transact(item.run, self.client, item.unit, item.timeout)
        except PortUnavailable as exc:
            self._lost(item, exc.message, started)
            return
        except ModbusTimeout as exc:
            if self._gone is not None and (why := self._gone()) is not None:
                self._lost(item, why, started)
                return
            self._record(item, exc.code, started)
            self._failed(item, health, exc)
            return
        except BusError as exc:
            self._record(item, error_key(exc.code, getattr(exc, "exception_code", None)),
                         started)
            if outcome_of(exc) is Outcome.FAILED:
                self._failed(item, health, exc)
                return
            # An exception response: the unit is alive.
            self._succeeded(health)
            if isinstance(exc, ModbusExceptionError) and \
                    exc.exception_code == SERVER_BUSY and item.attempts_left > 0:
                # Alive but busy: ask again after one timeout; others go first meanwhile.
                health.ready_at = time.monotonic() + item.timeout
                self.schedule.requeue(item)
                return
            self._finish(item, exc)
            return
        finally:
            self._quiet_until = max(self._quiet_until, time.monotonic() + self.frame_gap)
        self._record(item, None, started)
        self._succeeded(health)
        if not item.future.done():
            item.future.set_result(result)

    def _lost(self, item: Item, why: str, started: float) -> None:
        self._record(item, PortUnavailable.code, started)
        self._port_down(PortUnavailable(f"{self.name}: {why}"))
        self._finish(item, self._port_error or PortUnavailable(self.name))

    def _record(self, item: Item, code: str | None, started: float) -> None:
        """Count one attempt on the line (stats: health topic and metrics)."""
        self.stats.transaction(item.unit, code, time.monotonic() - started, time.time())

    def _succeeded(self, health: UnitHealth) -> None:
        health.failures = 0
        health.ready_at = 0.0

    def _failed(self, item: Item, health: UnitHealth, error: BusError) -> None:
        now = time.monotonic()
        if health.failures == 0 and item.settle:
            # A unit that used to answer may just be slow: keep the line quiet so its
            # late reply is not taken for the next request's answer.
            self._quiet_until = max(self._quiet_until, now + item.timeout)
        health.failures += 1
        # The exponent is capped: after ~1,000 failures (a unit answering garbage to a
        # stream of commands) 2**n no longer converts to float and every further
        # failure was an "unexpected error" with a traceback.
        backoff = min(item.timeout * 2 ** min(health.failures - 1, 30), self.backoff_max)
        health.ready_at = now + backoff
        # Retry only a unit that was answering until now: it may have missed one frame.
        # A unit already failing gets one attempt per request, so it cannot hog the line.
        if item.attempts_left > 0 and health.failures == 1:
            self.schedule.requeue(item)
            return
        self._finish(item, error)

    def _finish(self, item: Item, error: BusError) -> None:
        if not item.future.done():
            item.future.set_exception(error)

    @property
    def queue_depth(self) -> int:
        """Transactions waiting for this port."""
        return len(self.schedule)

    def queued(self, unit: int) -> int:
        """Transactions waiting for one unit."""
        return self.schedule.queued(unit)

    def forget(self, unit: int) -> None:
        """Drop a unit's bookkeeping when nothing of it is queued: a scan probes ids
        nobody uses, and they must not count in the shares of the units served."""
        if self.schedule.forget(unit):
            self.stats.units.pop(unit, None)  # the port's totals keep the traffic

    # -- the port --------------------------------------------------------------

    def _port_down(self, error: PortUnavailable) -> None:
        self._port_error = error
        self.client.close()

    async def _ensure_open(self) -> None:
        if self.client.connected:
            return
        now = time.monotonic()
        if now < self._reopen_at and self._port_error is not None:
            raise PortUnavailable(
                f"{self._port_error.message}; next try in {self._reopen_at - now:.1f} s")
        try:
            await self._opener()
        except PortUnavailable as exc:
            if self._port_error is None or self._port_error.message != exc.message:
                held = self._budget.take("port")
                if held is not None:
                    log.warning("%s%s", exc.message, held_note(held))
            self._port_error = exc
            self._reopen_at = time.monotonic() + self._reopen_delay
            self._reopen_delay = min(self._reopen_delay * 2, self._reopen_max)
            raise
        if self._port_error is not None:
            held = self._budget.take("port")
            if held is not None:
                log.info("port %s is open again%s", self.name, held_note(held))
        if self._opened:
            self.stats.reopens += 1
        self._opened = True
        self._port_error = None
        self._reopen_delay = self._reopen_min
        self._quiet_until = time.monotonic() + self.frame_gap


__all__ = ["Bus", "Priority", "Raw", "UnitHealth"]
