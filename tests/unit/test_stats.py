"""The transaction statistics the bus reports to (health topic and metrics read them)."""

from __future__ import annotations

import pytest

from bridge.core.stats import BUCKETS, Counters, PortStats, error_key, percentile


def test_a_port_counts_itself_and_each_unit():
    port = PortStats()
    port.transaction(1, None, 0.012, now=100.0)
    port.transaction(1, "timeout", 0.5, now=101.0)
    port.transaction(2, error_key("modbus_exception", 2), 0.02, now=102.0)
    port.refused(2, "busy")
    assert (port.requests, port.errors, port.timeouts, port.last_success) == (
        3, {"timeout": 1, "modbus_exception_2": 1, "busy": 1}, 1, 100.0)
    assert (port.unit(1).requests, port.unit(1).errors, port.unit(1).last_success) == (
        2, {"timeout": 1}, 100.0)
    assert (port.unit(2).requests, port.unit(2).errors, port.unit(2).last_success) == (
        1, {"modbus_exception_2": 1, "busy": 1}, None)


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 0.5, None),
    ([3.0], 0.99, 3.0),
    ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
    (list(range(1, 101)), 0.99, 99),
    (list(range(1, 101)), 0.5, 50),
    (list(range(100, 0, -1)), 0.5, 50),
])
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def test_latency_percentiles_use_successes_only():
    c = Counters()
    for ms in (10, 20, 30):
        c.record(None, ms / 1000, now=1.0)
    c.record("timeout", 0.5, now=2.0)
    assert (c.percentile(0.5), c.percentile(0.99)) == (0.02, 0.03)


def test_histogram_buckets_are_cumulative_and_count_everything():
    c = Counters()
    for seconds in (0.001, 0.03, 0.03, 7.0):
        c.record(None, seconds, now=1.0)
    buckets = dict(c.cumulative_buckets())
    assert buckets[BUCKETS[0]] == 1 and buckets[0.05] == 3 and buckets[5.0] == 3
    assert buckets[float("inf")] == 4 and c.duration_count == 4
    assert c.duration_sum == pytest.approx(7.061)
