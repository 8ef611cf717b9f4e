"""The fleet benchmark's count (benchmarks/fleet.py): messages published per second,
per device from its first to its last JSON state, whatever the window's edges cut."""

from __future__ import annotations

import pytest

from benchmarks.fleet import _per_device
from benchmarks.harness import MessageCounter

POINTS = 50


def _counter(polls: dict[str, list[float]]) -> MessageCounter:
    """Messages as a poll publishes them: the device's state, then each datapoint
    within the next 50 ms (and an availability now and then, which is no poll's)."""
    counter = MessageCounter(port=0, topic="modbus/#")  # not started: filled by hand
    events: list[tuple[float, str]] = []
    for state, times in polls.items():
        for at in times:
            events.append((at, state))
            events.extend((at + (j + 1) * 0.001, f"{state}/r{j}") for j in range(POINTS))
            events.append((at + 0.06, f"{state}/availability"))
    for at, topic in sorted(events):
        counter.received.append(at)
        counter.topics.append(topic)
    return counter


@pytest.mark.parametrize("t0", [2.0, 2.003, 2.02, 2.04, 2.5])
def test_the_window_edges_do_not_move_the_count(t0: float) -> None:
    # Three devices polling in step each second; the window's edges fall before, inside
    # and after their bursts.
    states = ["modbus/a", "modbus/b", "modbus/c"]
    counter = _counter({s: [k + 0.01 * d for k in range(14)] for d, s in enumerate(states)})
    published, slowest = _per_device(counter, states, t0, t0 + 10.0)
    assert published == pytest.approx(3 * (1 + POINTS))
    assert slowest == pytest.approx(1.0)


def test_a_device_that_falls_behind_shows() -> None:
    states = ["modbus/a", "modbus/slow"]
    counter = _counter({"modbus/a": [float(k) for k in range(14)],
                        "modbus/slow": [0.5 + 2 * k for k in range(7)]})
    published, slowest = _per_device(counter, states, 1.5, 11.5)
    assert published == pytest.approx((1 + POINTS) * 1.5)
    assert slowest == pytest.approx(0.5)


def test_a_device_without_two_polls_in_the_window_fails_the_run() -> None:
    states = ["modbus/a", "modbus/gone"]
    counter = _counter({"modbus/a": [float(k) for k in range(14)], "modbus/gone": [0.5]})
    assert _per_device(counter, states, 1.5, 11.5) == (0.0, 0.0)


def test_between_counts_by_receive_time() -> None:
    counter = _counter({"modbus/a": [1.0, 2.0]})
    # One burst: the state, 50 datapoints, the availability.
    assert counter.between(0.0, 1.9) == 1 + POINTS + 1
    assert counter.between(1.0, 1.0) == 1
    assert counter.between(2.5, 9.0) == 0
