"""The pymodbus calls one transaction makes, and their failures translated.

Each `read_call`/`write_call` checks its arguments (what pymodbus would reject
with a ValueError, or worse, send) and returns the coroutine function the bus's
worker runs on the port's client. `transact` runs one under its timeout and turns
every pymodbus failure into a `BusError`, so nothing pymodbus leaves this module.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pymodbus.transaction.transaction as pymodbus_transaction
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from bridge.core.errors import (
    EXCEPTION_NAMES,
    InvalidRequest,
    ModbusExceptionError,
    ModbusTimeout,
    PortUnavailable,
)
from bridge.core.points import Table
from bridge.core.ratelimit import LogBudget, held_note
from bridge.core.transport import unit_problem

log = logging.getLogger(__name__)

Raw = list[int] | list[bool]
Call = Callable[[Any], Awaitable[Raw | None]]

ACKNOWLEDGE = 5  # exception 05: the unit accepted a write and processes it later
SERVER_BUSY = 6  # exception 06: alive but busy, worth a retry after a pause

_READS: dict[Table, Callable[..., Awaitable[Any]]] = {
    Table.HOLDING: lambda c, a, **kw: c.read_holding_registers(a, **kw),
    Table.INPUT: lambda c, a, **kw: c.read_input_registers(a, **kw),
    Table.COIL: lambda c, a, **kw: c.read_coils(a, **kw),
    Table.DISCRETE: lambda c, a, **kw: c.read_discrete_inputs(a, **kw),
}


def char_time_gap(baudrate: int, bytesize: int, parity: str, stopbits: int) -> float:
    """3.5 character times (Modbus over serial line spec 2.5.1.1), 1.75 ms above 19200 baud."""
    if baudrate > 19200:
        return 0.00175
    bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
    return 3.5 * bits / baudrate


def read_call(unit: int, units: range, table: Table, address: int, count: int) -> Call:
    check_request(unit, units, address, count, table.max_read)

    async def run(client: Any) -> Raw:
        response = await _READS[table](client, address, count=count, device_id=unit)
        _check_reply(response, _READ_CODES[table])
        if table.is_bits:
            bits = [bool(b) for b in response.bits]
            if len(bits) != (count + 7) // 8 * 8:
                raise ModbusTimeout(f"reply has {len(bits)} bits, asked for {count}")
            return bits[:count]
        registers = [int(r) for r in response.registers]
        if len(registers) != count:
            # A stale reply to an earlier request (RTU has no transaction id).
            raise ModbusTimeout(f"reply has {len(registers)} registers, asked for {count}")
        return registers

    return run


def write_call(unit: int, units: range, table: Table, address: int,
               values: Sequence[int] | Sequence[bool], single: bool) -> Call:
    if not table.is_writable:
        raise InvalidRequest(f"{table} cannot be written", field="table")
    check_request(unit, units, address, len(values), table.max_write, "values")
    if not table.is_bits and not all(0 <= int(v) <= 0xFFFF for v in values):
        raise InvalidRequest("register values must be 0..65535", field="values")

    async def run(client: Any) -> None:
        if table is Table.COIL:
            if single:
                response = await client.write_coil(address, bool(values[0]), device_id=unit)
            else:
                response = await client.write_coils(
                    address, [bool(v) for v in values], device_id=unit)
        elif single:
            response = await client.write_register(address, int(values[0]), device_id=unit)
        else:
            response = await client.write_registers(
                address, [int(v) for v in values], device_id=unit)
        expected = (5 if single else 15) if table is Table.COIL else (6 if single else 16)
        _check_function(response, expected)
        if response.isError() and getattr(response, "exception_code", None) == ACKNOWLEDGE:
            return  # accepted: not an error for a write
        _check_reply(response, expected)

    return run


class _Garbled(ModbusIOException):
    """A reply arrived that pymodbus cannot decode."""


def guard_frames(client: Any, name: str, budget: LogBudget) -> None:
    """A reply pymodbus cannot decode (a byte count that does not match the data) raises
    out of its protocol's data_received: asyncio then logs a 14-line traceback and
    closes the connection, at every such reply. Instead the bytes are dropped, the
    request waiting for them fails at once as a garbled reply, and one log line (within
    the port's budget) says so."""
    manager = client.ctx
    receive = manager.callback_data

    def callback_data(data: bytes, addr: tuple[str, int] | None = None) -> int:
        try:
            used: int = receive(data, addr)
        except ModbusIOException as exc:
            held = budget.take("garbled")
            if held is not None:
                log.warning("%s: dropped a reply that cannot be decoded (%d bytes: %s)%s",
                            name, len(data), exc, held_note(held))
            future = manager.response_future
            if not future.done():
                future.set_exception(_Garbled("reply cannot be decoded"))
            return len(data)
        return used

    manager.callback_data = callback_data


async def transact(run: Call, client: Any, unit: int, timeout: float) -> Raw | None:
    """Run one call under its timeout; every failure leaves as a BusError subclass
    (PortUnavailable when the connection itself was lost)."""
    try:
        async with asyncio.timeout(timeout):
            return await run(client)
    except (ModbusTimeout, ModbusExceptionError):
        raise
    except _Garbled:
        raise ModbusTimeout(f"unit {unit}: reply cannot be decoded") from None
    except (TimeoutError, ModbusIOException):
        raise ModbusTimeout(f"unit {unit} did not answer within {timeout:g} s") from None
    except ConnectionException as exc:
        raise PortUnavailable(f"connection lost ({exc})") from None
    except ModbusException as exc:
        raise ModbusTimeout(f"unit {unit}: {exc}") from None


class _OneTimeout(types.ModuleType):
    """asyncio as pymodbus's transaction module sees it: its `wait_for` adds no timeout.

    Every transaction runs under `transact`'s timeout, the unit's own. pymodbus's
    `wait_for` added a second one, its connect timeout (CONNECT_TIMEOUT, 3 s): a unit
    configured with a longer timeout (a slow gateway) was cut off at 3 s. On Python
    3.11 that `wait_for` also resumed the transaction one event-loop turn after the
    reply arrived (a callback sets a second future): with commands queued, other work
    ran in that turn before the next request went out. When `transact`'s timeout
    expires, the awaited reply future is cancelled, as wait_for cancelled it.

    The other names are asyncio's, copied: a `__getattr__` fallback failed a lookup
    and built an AttributeError for each access, three per transaction."""

    def __init__(self) -> None:
        super().__init__("asyncio")
        self.__dict__.update(vars(asyncio))
        self.wait_for = self._wait_for

    @staticmethod
    async def _wait_for(awaitable: Awaitable[Any], timeout: float | None) -> Any:
        return await awaitable


pymodbus_transaction.asyncio = _OneTimeout()  # type: ignore[attr-defined]


def check_request(unit: int, units: range, address: int, count: int, most: int,
                  count_field: str = "count") -> None:
    """Arguments pymodbus would reject with a ValueError (or worse, send)."""
    if (problem := unit_problem(unit, units)) is not None:
        # On a serial line unit 0 is broadcast: no unit answers it, so a read could
        # only time out. Modbus TCP devices answer on 0 or 255 themselves.
        raise InvalidRequest(f"unit {problem}", field="unit")
    if not 0 <= address <= 65535:
        raise InvalidRequest(f"address must be 0..65535, got {address}", field="address")
    if not 1 <= count <= most:
        raise InvalidRequest(f"{count_field}: 1..{most} per request, got {count}",
                             field=count_field)
    if address + count > 65536:
        raise InvalidRequest(f"address {address} + {count} runs past 65535", field=count_field)


_READ_CODES = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}


def _check_function(response: Any, expected: int) -> None:
    """A reply for another function (an FC 4 answer to an FC 3 request) is not data:
    pymodbus decodes whatever function the reply names. Taken as a wrong reply, like
    one of the wrong length (a stale frame, or a confused gateway)."""
    code = getattr(response, "function_code", None)
    if not isinstance(code, int) or code & 0x7F != expected:
        raise ModbusTimeout(f"reply is for function {code}, asked for function {expected}")


def _check_reply(response: Any, expected: int) -> None:
    _check_function(response, expected)
    if response.isError():
        code = getattr(response, "exception_code", None)
        if not isinstance(code, int):
            raise ModbusTimeout("exception reply without an exception code")
        if code not in EXCEPTION_NAMES:
            # Not one of the spec's codes: say so, instead of a name it does not have.
            raise ModbusExceptionError(code, f"non-standard exception code {code}")
        raise ModbusExceptionError(code)
