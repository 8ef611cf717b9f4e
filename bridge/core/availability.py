"""A transaction's outcome, and a device's availability from its outcomes.

The one owner of "what did this transaction prove about the unit": the bus uses
`outcome_of` for its retries and back-off, the device runner for availability,
so the two can never disagree (a gateway's exception 11 used to back a unit off
on the bus while its availability stayed `online`).

- ANSWERED: a reply came, data or an exception response that proves the unit is
  there (illegal address, busy, ...);
- FAILED: no reply, a garbled or mismatched one, or a gateway saying the unit
  behind it is unreachable (exceptions 10 and 11);
- DOWN: the transport itself is down (port missing, TCP refused): offline at once;
- NOT_ASKED: the request never went out (queue full, deadline passed): it says
  nothing about the unit.
"""

from __future__ import annotations

from enum import Enum

from bridge.core.errors import BridgeError, BusError, PortUnavailable


class Outcome(Enum):
    ANSWERED = "answered"
    FAILED = "failed"
    DOWN = "down"
    NOT_ASKED = "not_asked"


def outcome_of(error: BridgeError | None) -> Outcome:
    """Classify one transaction by the error it ended with (None: success)."""
    if error is None:
        return Outcome.ANSWERED
    if isinstance(error, PortUnavailable):
        return Outcome.DOWN
    if isinstance(error, BusError):
        if not error.reached_unit:
            return Outcome.NOT_ASKED
        return Outcome.FAILED if error.counts_as_failure else Outcome.ANSWERED
    return Outcome.NOT_ASKED  # a request error: nothing was sent


class Availability:
    """A device's connection state (mqtt-api.md "Connection state").

    `online` after an answered transaction; `offline` at once when the transport is
    down, or after `offline_after` failed transactions in a row. `record` returns
    the new state on a transition and None otherwise, so callers publish and log
    transitions only.
    """

    def __init__(self, offline_after: int) -> None:
        self.offline_after = offline_after
        self.online: bool | None = None  # None: not known yet
        self.failures = 0

    def record(self, outcome: Outcome) -> bool | None:
        if outcome is Outcome.NOT_ASKED:
            return None
        if outcome is Outcome.ANSWERED:
            self.failures = 0
            return self._become(True)
        self.failures += 1
        if outcome is Outcome.DOWN or self.failures >= self.offline_after:
            return self._become(False)
        return None

    def _become(self, online: bool) -> bool | None:
        if self.online == online:
            return None
        self.online = online
        return online
