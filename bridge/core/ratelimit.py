"""A log budget: every cause is logged, but never faster than a fixed rate. Pure.

Whatever arrives from the network (garbage replies, retained commands, a message
that drops the broker connection at every reconnect), the log must grow at a
bounded rate. Sampling (every 10th line) hides the cause of the other nine; a
budget instead lets each line through until `burst` lines were spent in a
`period`, then holds lines back and says, in the next line it lets through, how
many it held back. Keys are fixed per log site, never taken from received data,
so the number of buckets (and so the total rate) is bounded too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float
    held: int = 0


class LogBudget:
    """At most `burst` lines at once and `burst` per `period` seconds on average, per key."""

    def __init__(self, burst: int = 10, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.rate = burst / period
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> int | None:
        """None: hold this line back. Else log it; the number is how many lines of this
        key were held back since the last one let through (0 usually)."""
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst),
                            bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            bucket.held += 1
            return None
        bucket.tokens -= 1.0
        held, bucket.held = bucket.held, 0
        return held


def held_note(held: int) -> str:
    """The suffix of a line that follows held-back ones."""
    return f" ({held} similar lines held back)" if held else ""


def clip(text: str, limit: int = 120) -> str:
    """Received text for a log line: shortened, control characters made visible."""
    text = text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
