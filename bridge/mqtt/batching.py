"""A socket wrapper that batches paho's system calls (no paho or aiomqtt import here).

paho reads an incoming packet with three or more `recv` calls (command byte,
length bytes, body) and writes each outgoing packet with its own `send`. With
thousands of QoS 1 messages per second (each with its PUBACK), those calls were
the largest single cost of the bridge. `BatchingSocket`:

- `recv(n)` serves from a buffer refilled by one large `recv`, at most once per
  event-loop callback (a flood of commands must not hold the loop for long: the
  kernel keeps the rest and the socket stays readable); `pending()` tells aiomqtt's
  reader that buffered bytes remain (it already asks, for TLS sockets);
  `take_packet()` hands over a whole packet at once (client_fixes.read_whole_packets);
- `send(data)` appends to a buffer flushed once per event-loop iteration with one
  `send`; when the kernel's buffer is full (a stalled broker) the rest waits and
  is retried with a capped back-off, in order;
- `close()` flushes what it can first (the DISCONNECT packet is written just
  before paho closes the socket);
- a write error is raised to paho at its next `recv`/`send`, so it disconnects
  as it would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

_RETRY_MIN, _RETRY_MAX = 0.001, 0.05  # seconds between flush attempts when blocked
_CHUNK = 4096


class BatchingSocket:
    def __init__(self, sock: Any, loop: asyncio.AbstractEventLoop) -> None:
        if sock is None:
            raise ValueError("no socket to wrap")
        self._sock = sock
        self._loop = loop
        self._in = b""
        self._pos = 0
        self._out: list[bytes] = []
        self._flushing = False
        self._retry = _RETRY_MIN
        self._error: OSError | None = None
        self._refilled = False  # in this event-loop turn
        # TLS sockets only: bytes decrypted already (reading them needs no system call).
        self._tls_pending = getattr(sock, "pending", None)

    # -- reading ------------------------------------------------------------------

    def recv(self, bufsize: int) -> bytes:
        if self._error is not None:
            raise self._error
        if self._pos >= len(self._in) and not self._fill():
            return b""
        chunk = self._in[self._pos:self._pos + bufsize]
        self._pos += len(chunk)
        return chunk

    def take_packet(self) -> tuple[int, bytes] | None:
        """One whole MQTT packet from the buffer, refilled as `recv` does: its first
        byte and its body (after the remaining length). None, consuming nothing, when
        the buffer does not hold all of it (or at end of stream): paho's byte-by-byte
        reading then takes over."""
        if self._error is not None:
            raise self._error
        if self._pos >= len(self._in) and not self._fill():
            return None
        buf, start = self._in, self._pos
        length, shift, pos = 0, 0, start + 1
        while True:
            if pos >= len(buf) or pos - start > 4:
                return None  # cut off here, or a malformed length paho will judge
            byte = buf[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        if pos + length > len(buf):
            return None
        self._pos = pos + length
        return buf[start], buf[pos:pos + length]

    def _fill(self) -> bool:
        """Refill the empty buffer with one `recv`; False at end of stream."""
        if self._refilled and not (self._tls_pending and self._tls_pending()):
            raise BlockingIOError  # paho stops reading; the loop calls us again
        data = self._sock.recv(_CHUNK)  # BlockingIOError / SSLWantReadError: to paho
        if not data:
            return False
        self._in, self._pos = data, 0
        if not self._refilled:
            self._refilled = True
            self._loop.call_soon(self._next_turn)
        return True

    def _next_turn(self) -> None:
        self._refilled = False

    def pending(self) -> int:
        tls = self._tls_pending
        return len(self._in) - self._pos + (int(tls()) if tls is not None else 0)

    # -- writing ------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> int:
        if self._error is not None:
            raise self._error
        self._out.append(bytes(data))
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush)
        return len(data)

    def _flush(self) -> None:
        if not self._out:
            self._flushing = False
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:  # the connection broke: paho hears it at its next call
            self._error = exc
            self._out.clear()
            self._flushing = False
            return
        rest = data[sent:]
        self._out = [rest] if rest else []
        if not rest:
            self._flushing = False
            self._retry = _RETRY_MIN
            return
        self._loop.call_later(self._retry, self._flush)
        self._retry = min(self._retry * 2, _RETRY_MAX)

    def close(self) -> None:
        if self._out and self._error is None:
            with contextlib.suppress(OSError, ValueError):
                self._sock.send(b"".join(self._out))
        self._out.clear()
        self._sock.close()

    def __getattr__(self, name: str) -> Any:  # fileno, setblocking, ...
        return getattr(self._sock, name)
