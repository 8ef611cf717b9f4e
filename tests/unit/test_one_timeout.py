"""bridge/modbus/calls.py gives pymodbus's transaction module a `wait_for` without a
timeout of its own: `transact`'s (the unit's timeout) is the only one, a reply
resumes the transaction one loop turn sooner than 3.11's wait_for, and an expired
wait cancels the reply future as before. (Every Modbus test runs through it:
replies, timeouts of silent units; test_bus has a unit slower than pymodbus's 3 s.)"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pymodbus.transaction.transaction as pymodbus_transaction
import pytest

import bridge.modbus.calls  # noqa: F401  (installs it)

shim = pymodbus_transaction.asyncio


def test_installed_and_the_rest_is_asyncio() -> None:
    assert shim.wait_for is not asyncio.wait_for
    for name in ("Future", "Lock", "exceptions", "TimeoutError", "get_running_loop"):
        assert getattr(shim, name) is getattr(asyncio, name), name


async def test_a_result_comes_back() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_result, 7)
    assert await shim.wait_for(future, 5) == 7


async def test_its_own_timeout_never_fires() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, future.set_result, 7)
    assert await shim.wait_for(future, 0.001) == 7  # pymodbus's 3 s would have cut it


async def test_the_outer_timeout_raises_and_cancels_the_reply_future() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):  # as transact() does
            await shim.wait_for(future, 3.0)
    assert future.cancelled()  # a late reply finds it done and is dropped


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


async def plain_await(future: Awaitable[int], timeout: float) -> int:
    return await future


async def test_the_waiter_resumes_as_soon_as_a_plain_await() -> None:
    plain = await turns_until_resumed(plain_await)
    assert await turns_until_resumed(shim.wait_for) == plain
    if sys.version_info < (3, 12):  # 3.11's wait_for: one turn later
        assert await turns_until_resumed(asyncio.wait_for) == plain + 1
