"""What a transaction's outcome proves about the unit: one table, used by the bus's
back-off and the device's availability alike."""

from __future__ import annotations

import pytest

from bridge.core.availability import Availability, Outcome, outcome_of
from bridge.core.errors import (
    BridgeError,
    Busy,
    Expired,
    InvalidRequest,
    ModbusExceptionError,
    ModbusTimeout,
    PortUnavailable,
)


@pytest.mark.parametrize(("error", "outcome"), [
    (None, Outcome.ANSWERED),
    *[(ModbusExceptionError(code), Outcome.ANSWERED) for code in (1, 2, 3, 4, 5, 6, 7, 8)],
    (ModbusExceptionError(10), Outcome.FAILED),  # gateway: path unavailable
    (ModbusExceptionError(11), Outcome.FAILED),  # gateway: target did not respond
    (ModbusTimeout("no reply"), Outcome.FAILED),
    (PortUnavailable("gone"), Outcome.DOWN),
    (Busy("full"), Outcome.NOT_ASKED),
    (Expired("late"), Outcome.NOT_ASKED),
    (InvalidRequest("bad"), Outcome.NOT_ASKED),
])
def test_outcome_of(error: BridgeError | None, outcome: Outcome) -> None:
    assert outcome_of(error) is outcome


A, F, D, N = Outcome.ANSWERED, Outcome.FAILED, Outcome.DOWN, Outcome.NOT_ASKED


@pytest.mark.parametrize(("outcomes", "transitions"), [
    ([A], [True]),
    ([F], [None]),  # one miss of two allowed: still unknown
    ([F, F], [None, False]),
    ([D], [False]),  # the transport is down: at once
    ([A, F, A], [True, None, None]),  # a miss between answers changes nothing
    ([A, F, F, F, A], [True, None, False, None, True]),
    ([N, N], [None, None]),
    ([D, N, A], [False, None, True]),
])
def test_availability_transitions(outcomes: list[Outcome],
                                  transitions: list[bool | None]) -> None:
    availability = Availability(offline_after=2)
    assert [availability.record(o) for o in outcomes] == transitions
