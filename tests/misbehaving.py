"""A hand-written Modbus TCP server on 127.0.0.1 that answers wrongly on purpose.

pymodbus's own server always answers correctly; the faults a review found in the
field (a reply for another function, exception codes outside the spec, a byte
count that does not match the data) need a server that does what it is told.
Requests are read as MBAP frames; `mode` decides each answer to a read:

    ok           registers 0, 1, 2, ... as asked
    wrong_fc     the same data under function 4 (input registers) for any read
    exception:N  exception response with code N
    bad_count    byte count one register more than the data that follows
    garbage      a frame of random bytes with a valid MBAP header
"""

from __future__ import annotations

import asyncio
import os
import struct
from types import TracebackType


class MisbehavingServer:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.port = 0
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> MisbehavingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # ends the handlers' reads
            writer.close()
        await self._server.wait_closed()
        # On 3.11 wait_closed does not wait for the handlers: one still reading when the
        # event loop ends is cancelled, and asyncio logs a CancelledError traceback.
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None  # start_server runs each handler as a task
        self._handlers.add(task)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                self.requests += 1
                answer = self.answer(pdu)
                writer.write(struct.pack(">HHHB", tid, 0, len(answer) + 1, unit) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()

    def answer(self, pdu: bytes) -> bytes:
        function = pdu[0]
        if function in (5, 6, 15, 16):  # writes: echo address and value/quantity
            return pdu[:5]
        address, count = struct.unpack(">HH", pdu[1:5])
        data = b"".join(struct.pack(">H", (address + i) & 0xFFFF) for i in range(count))
        if self.mode == "wrong_fc":
            return bytes([4 if function != 4 else 3, len(data)]) + data
        if self.mode.startswith("exception:"):
            return bytes([function | 0x80, int(self.mode.split(":")[1])])
        if self.mode == "bad_count":
            return bytes([function, len(data) + 2]) + data
        if self.mode == "garbage":
            return bytes([function]) + os.urandom(3 + count)
        return bytes([function, len(data)]) + data
