"""The log budget: every line until the burst is spent, then one per period/burst,
with the count of lines held back in the next one let through."""

from __future__ import annotations

from bridge.core.ratelimit import LogBudget, clip, held_note


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate_and_held_count():
    clock = Clock()
    budget = LogBudget(burst=3, period=30.0, clock=clock)  # one token per 10 s
    assert [budget.take("k") for _ in range(5)] == [0, 0, 0, None, None]
    clock.now = 10.0
    assert budget.take("k") == 2  # says two were held back
    assert budget.take("k") is None
    assert budget.take("other") == 0  # keys are independent


def test_a_flood_gets_a_bounded_number_of_lines_per_minute():
    clock = Clock()
    budget = LogBudget(burst=10, period=60.0, clock=clock)
    let_through = 0
    for n in range(100_000):  # 100,000 events over 10 minutes
        clock.now = n * 600 / 100_000
        let_through += budget.take("k") is not None
    assert let_through <= 10 + 10 * 10


def test_clip_shortens_and_shows_control_characters():
    assert clip("a" * 1000).endswith("... (1000 chars)")
    assert len(clip("a" * 70_000)) < 200
    assert clip("x\ny") == "x\\ny"
    assert held_note(0) == "" and "3" in held_note(3)
