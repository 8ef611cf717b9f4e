"""bridge/modbus/calls.py gives pymodbus's transaction module 3.12's wait_for on 3.11:
the same results, timeouts and cancellation as asyncio.wait_for, one loop turn sooner.
(Every Modbus test runs through it: replies, timeouts of silent units.)"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pymodbus.transaction.transaction as pymodbus_transaction
import pytest

import bridge.modbus.calls  # noqa: F401  (installs it)

wait_for = pymodbus_transaction.asyncio.wait_for


def test_installed_where_wait_for_costs_a_loop_turn() -> None:
    assert (wait_for is asyncio.wait_for) == (sys.version_info >= (3, 12))


async def test_a_result_comes_back() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_result, 7)
    assert await wait_for(future, 5) == 7


async def test_a_timeout_raises_timeout_error_and_cancels_the_future() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(asyncio.exceptions.TimeoutError):  # what pymodbus catches
        await wait_for(future, 0.01)
    assert future.cancelled()


async def turns_until_resumed(wait: Callable[..., Awaitable[int]]) -> int:
    """Event-loop turns between a reply (the future's result) and the waiter running."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()
    turns = 0

    async def count() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    waiter = asyncio.create_task(wait(future, 5))
    await asyncio.sleep(0)  # the waiter waits
    counter = asyncio.create_task(count())
    await asyncio.sleep(0)  # the counter counts
    turns = 0
    future.set_result(1)
    assert await waiter == 1
    resumed = turns
    counter.cancel()
    return resumed


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12's wait_for is this one")
async def test_the_waiter_resumes_a_loop_turn_sooner_than_with_wait_for() -> None:
    assert await turns_until_resumed(wait_for) < await turns_until_resumed(asyncio.wait_for)
