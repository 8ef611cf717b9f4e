"""Transaction statistics of a port and of each unit on it: the one place the bus
reports to, read by the health topic and the Prometheus metrics alike.

Pure bookkeeping (no I/O, no clock of its own: callers pass durations and the
wall-clock time), so tests feed it outcomes directly. The bus calls two hooks:
`transaction()` for every attempt that went on the line, `refused()` for a
request answered without one (queue full, deadline passed, port down).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

# Latency window for percentiles: the last N transactions (a bounded memory cost).
WINDOW = 1000
# Transaction duration histogram bounds, seconds (Prometheus `le` buckets): from a
# fast TCP unit (~1 ms) to a timed-out serial one (timeouts are ~0.1..5 s).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TIMEOUT = "timeout"


@dataclass
class Counters:
    """Outcomes of one port or unit."""

    requests: int = 0  # transactions attempted on the line
    errors: dict[str, int] = field(default_factory=dict)  # by error code
    last_success: float | None = None  # wall clock, seconds since the epoch
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    duration_sum: float = 0.0
    duration_count: int = 0

    def record(self, code: str | None, seconds: float, now: float) -> None:
        self.requests += 1
        self.duration_sum += seconds
        self.duration_count += 1
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                break
        if code is None:
            self.last_success = now
            self.durations.append(seconds)
        else:
            self.count_error(code)

    def count_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    @property
    def timeouts(self) -> int:
        return self.errors.get(TIMEOUT, 0)

    def percentile(self, q: float) -> float | None:
        """Duration (seconds) below which `q` of the recent successful transactions
        fall (nearest rank); None before the first success."""
        return percentile(self.durations, q)

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """(upper bound, count <= bound) pairs, ending with +Inf: Prometheus's shape."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip(BUCKETS, self.buckets, strict=True):
            total += count
            out.append((bound, total))
        out.append((float("inf"), self.duration_count))
        return out


def percentile(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, -(-int(q * 1000) * len(ordered) // 1000))  # ceil(q * n), at least 1
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class PortStats(Counters):
    """A port's counters, with each unit's own beside them."""

    units: dict[int, Counters] = field(default_factory=dict)
    reopens: int = 0  # times the port was opened again after it had been open

    def unit(self, unit: int) -> Counters:
        counters = self.units.get(unit)
        if counters is None:  # not setdefault: it built a Counters (and its deque) per call
            counters = self.units[unit] = Counters()
        return counters

    def transaction(self, unit: int, code: str | None, seconds: float, now: float) -> None:
        """One attempt on the line: `code` None for success, else the error code
        (`timeout`, `modbus_exception_2`, ...)."""
        self.record(code, seconds, now)
        self.unit(unit).record(code, seconds, now)

    def refused(self, unit: int, code: str) -> None:
        """A request answered without a transaction (busy, expired, port_unavailable)."""
        self.count_error(code)
        self.unit(unit).count_error(code)


def error_key(code: str, exception_code: int | None = None) -> str:
    """The key a failure is counted under: the wire error code, with the Modbus
    exception number for exception responses (`modbus_exception_2`)."""
    return f"{code}_{exception_code}" if exception_code is not None else code


@dataclass
class MqttStats:
    """Messages: counted where the bridge publishes and receives (app.py); connects
    are the link's own count."""

    published: int = 0
    dropped: int = 0  # publishes not sent: disconnected, or the connection died first
    received: int = 0

    def sent(self, ok: bool) -> None:
        if ok:
            self.published += 1
        else:
            self.dropped += 1
