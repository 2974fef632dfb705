"""Tests for baseplate.retry."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from baseplate import retry
from baseplate.retry import (
    ExponentialBackoffRetryPolicy,
    IndefiniteRetryPolicy,
    MaximumAttemptsRetryPolicy,
    RetryPolicy,
    TimeBudgetRetryPolicy,
)


class FakeClock:
    """A monotonic clock that only moves when slept on or advanced by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(retry.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(retry.time, "sleep", fake.sleep)
    return fake


def test_no_constraints_retries_indefinitely(clock: FakeClock) -> None:
    attempts = iter(RetryPolicy.new())
    assert [next(attempts) for _ in range(1000)] == [None] * 1000
    assert clock.sleeps == []


def test_attempts_only(clock: FakeClock) -> None:
    assert list(RetryPolicy.new(attempts=3)) == [None, None, None]
    assert clock.sleeps == []


def test_single_attempt(clock: FakeClock) -> None:
    assert list(RetryPolicy.new(attempts=1)) == [None]


def test_policy_can_be_iterated_again() -> None:
    policy = RetryPolicy.new(attempts=2)
    assert list(policy) == [None, None]
    assert list(policy.yield_attempts()) == [None, None]


def test_budget_only(clock: FakeClock) -> None:
    remaining = []
    for time_remaining in RetryPolicy.new(budget=1.0):
        remaining.append(time_remaining)
        clock.now += 0.3  # each attempt takes 0.3 seconds
    assert remaining == pytest.approx([1.0, 0.7, 0.4, 0.1])
    assert clock.sleeps == []


def test_budget_clock_starts_when_iteration_starts(clock: FakeClock) -> None:
    policy = RetryPolicy.new(budget=1.0)
    clock.now += 5.0
    assert next(iter(policy)) == pytest.approx(1.0)


def test_budget_reads_the_real_monotonic_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every reading this thread takes is recorded, so the times yielded can be
    # checked against them exactly, with nothing asserted about how long
    # anything took.
    real_monotonic = time.monotonic
    this_thread = threading.get_ident()
    readings: list[float] = []

    def recorded_monotonic() -> float:
        now = real_monotonic()
        if threading.get_ident() == this_thread:
            readings.append(now)
        return now

    monkeypatch.setattr(retry.time, "monotonic", recorded_monotonic)
    policy = TimeBudgetRetryPolicy(IndefiniteRetryPolicy(), budget=3600.0)
    remaining = list(itertools.islice(policy, 3))
    start, *later = readings
    assert len(later) == 2
    assert remaining == [3600.0] + [3600.0 - (reading - start) for reading in later]


def test_backoff_sleeps_double_each_attempt(clock: FakeClock) -> None:
    assert list(RetryPolicy.new(attempts=5, backoff=0.1)) == [None] * 5
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8])


def test_backoff_does_not_sleep_after_last_attempt(clock: FakeClock) -> None:
    for _ in RetryPolicy.new(attempts=2, backoff=1.0):
        pass
    assert clock.sleeps == [1.0]


def test_backoff_does_not_sleep_before_first_attempt(clock: FakeClock) -> None:
    for _ in RetryPolicy.new(backoff=1.0):
        break
    assert clock.sleeps == []


def test_remaining_time_accounts_for_backoff(clock: FakeClock) -> None:
    remaining = list(RetryPolicy.new(budget=2.0, backoff=0.25))
    # Sleeps of 0.25, 0.5 and 1.0 leave 0.25; the next delay (2.0) is cut to
    # what is left of the budget, as in the original, and one last attempt
    # follows with no time left. Then the budget is spent.
    assert remaining == pytest.approx([2.0, 1.75, 1.25, 0.25, 0.0])
    assert clock.sleeps == pytest.approx([0.25, 0.5, 1.0, 0.25])


class FixedRemaining(RetryPolicy):
    """A base policy that always has the same time left, like the original's test mock."""

    def __init__(self, remaining: float) -> None:
        self.remaining = remaining

    def yield_attempts(self) -> Iterator[float | None]:
        return itertools.repeat(self.remaining)


def test_backoff_sleep_is_cut_to_the_base_policys_remaining_time(clock: FakeClock) -> None:
    attempts = iter(ExponentialBackoffRetryPolicy(FixedRemaining(0.9), base=0.1))
    remaining = [next(attempts) for _ in range(6)]
    # The base policy's lower time remaining takes over at the fifth sleep:
    # 1.6 seconds is cut to 0.9, and the attempt is still made.
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.9])
    assert remaining == pytest.approx([0.9, 0.8, 0.7, 0.5, 0.1, 0.0])


def test_budget_overrides_backoff(clock: FakeClock) -> None:
    attempts = iter(RetryPolicy.new(backoff=0.1, budget=1))
    assert next(attempts) == 1
    clock.now += 0.4  # the first attempt takes 0.4s
    assert next(attempts) == pytest.approx(0.5)  # after sleeping 0.1
    clock.now += 0.4
    assert next(attempts) == pytest.approx(0.0)  # 0.2 cut to the 0.1 left
    assert clock.sleeps == pytest.approx([0.1, 0.1])
    with pytest.raises(StopIteration):
        next(attempts)


def test_attempts_budget_and_backoff(clock: FakeClock) -> None:
    def run(policy: RetryPolicy) -> list[float | None]:
        remaining = []
        for time_remaining in policy:
            remaining.append(time_remaining)
            clock.now += 0.5  # each attempt takes half a second
        return remaining

    # Attempts run out first.
    assert run(RetryPolicy.new(attempts=3, budget=10.0, backoff=0.1)) == pytest.approx(
        [10.0, 9.4, 8.7]
    )
    assert clock.sleeps == pytest.approx([0.1, 0.2])

    # The budget runs out first.
    clock.sleeps.clear()
    assert run(RetryPolicy.new(attempts=10, budget=3.0, backoff=0.5)) == pytest.approx(
        [3.0, 2.0, 0.5]
    )
    assert clock.sleeps == pytest.approx([0.5, 1.0])


def test_for_else_from_reference(clock: FakeClock) -> None:
    class SomeError(Exception):
        pass

    class MaxRetriesError(Exception):
        pass

    calls: list[float | None] = []

    def do(timeout: float | None, fail: bool) -> None:
        calls.append(timeout)
        if fail:
            raise SomeError

    def operation(failures: int) -> None:
        for time_remaining in RetryPolicy.new(attempts=3):
            try:
                do(timeout=time_remaining, fail=len(calls) < failures)
                break
            except SomeError:
                pass
        else:
            raise MaxRetriesError

    operation(failures=2)
    assert calls == [None, None, None]

    calls.clear()
    with pytest.raises(MaxRetriesError):
        operation(failures=3)
    assert calls == [None, None, None]


@pytest.mark.parametrize("attempts", [0, -1])
def test_attempts_must_be_positive(attempts: int) -> None:
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        RetryPolicy.new(attempts=attempts)


@pytest.mark.parametrize("budget", [-1.0, -0.001, float("nan")])
def test_budget_must_not_be_negative(budget: float) -> None:
    with pytest.raises(ValueError, match="budget must be a non-negative number of seconds"):
        RetryPolicy.new(budget=budget)


@pytest.mark.parametrize("budget", [0, 0.0])
def test_zero_budget_makes_exactly_one_attempt(clock: FakeClock, budget: float) -> None:
    assert list(TimeBudgetRetryPolicy(IndefiniteRetryPolicy(), budget=budget)) == [0]
    assert list(RetryPolicy.new(budget=budget, backoff=0.1)) == [0]
    assert clock.sleeps == []


def test_first_attempt_gets_the_whole_budget(clock: FakeClock) -> None:
    attempts = iter(TimeBudgetRetryPolicy(IndefiniteRetryPolicy(), budget=5))
    assert next(attempts) == 5
    clock.now += 3
    assert next(attempts) == pytest.approx(2)
    clock.now += 4
    with pytest.raises(StopIteration):
        next(attempts)


def test_budget_with_attempts_makes_no_extra_attempt(clock: FakeClock) -> None:
    # The original yielded the budget once before consulting its subpolicy,
    # so attempts=3 with a budget made four attempts.
    assert len(list(RetryPolicy.new(attempts=3, budget=10.0))) == 3


def test_constructors_take_the_originals_arguments() -> None:
    base = IndefiniteRetryPolicy()
    assert MaximumAttemptsRetryPolicy(policy=base, attempts=2).subpolicy is base
    assert TimeBudgetRetryPolicy(policy=base, budget=1.5).budget == 1.5
    assert ExponentialBackoffRetryPolicy(policy=base, base=0.5).base == 0.5


@pytest.mark.parametrize("backoff", [0, -0.1, float("nan"), float("inf")])
def test_backoff_must_be_positive_and_finite(backoff: float) -> None:
    with pytest.raises(ValueError, match="backoff must be a positive number"):
        RetryPolicy.new(backoff=backoff)


def test_policies_are_immutable_values() -> None:
    policy = RetryPolicy.new(attempts=3, budget=1.0, backoff=0.1)
    assert policy == RetryPolicy.new(attempts=3, budget=1.0, backoff=0.1)
    assert policy != RetryPolicy.new(attempts=4, budget=1.0, backoff=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.subpolicy = IndefiniteRetryPolicy()  # type: ignore[attr-defined]


def test_new_composes_building_blocks() -> None:
    assert RetryPolicy.new(attempts=3, budget=1.0, backoff=0.1) == ExponentialBackoffRetryPolicy(
        TimeBudgetRetryPolicy(MaximumAttemptsRetryPolicy(IndefiniteRetryPolicy(), 3), 1.0), 0.1
    )


def test_nested_budgets_yield_the_smaller(clock: FakeClock) -> None:
    policy = TimeBudgetRetryPolicy(TimeBudgetRetryPolicy(IndefiniteRetryPolicy(), 0.5), 2.0)
    remaining = []
    for time_remaining in policy:
        remaining.append(time_remaining)
        clock.now += 0.2
    assert remaining == pytest.approx([0.5, 0.3, 0.1])


# --- the backoff options: a cap, jitter and a stop event --------------------------


def test_max_delay_caps_each_delay(clock: FakeClock) -> None:
    assert list(RetryPolicy.new(attempts=7, backoff=1.0, max_delay=5.0)) == [None] * 7
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_delay_is_the_one_backoff_formula() -> None:
    policy = ExponentialBackoffRetryPolicy(IndefiniteRetryPolicy(), base=1.0, max_delay=60.0)
    assert [policy.delay(attempt) for attempt in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    # Far past any float's range, the cap still holds rather than overflowing.
    assert policy.delay(10_000) == 60.0
    assert ExponentialBackoffRetryPolicy(IndefiniteRetryPolicy(), base=0.5).delay(3) == 2.0


def test_jitter_draws_each_sleep_from_that_fraction_below_the_delay(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws: list[tuple[float, float]] = []

    def lowest(low: float, high: float) -> float:
        draws.append((low, high))
        return low

    monkeypatch.setattr(retry.random, "uniform", lowest)
    assert list(RetryPolicy.new(attempts=4, backoff=1.0, jitter=0.25)) == [None] * 4
    assert draws == [(0.75, 1.0)] * 3
    assert clock.sleeps == [0.75, 1.5, 3.0]


def test_jittered_sleeps_stay_within_their_bounds_and_vary() -> None:
    policy = ExponentialBackoffRetryPolicy(
        IndefiniteRetryPolicy(), base=1.0, max_delay=60.0, jitter=0.5
    )
    for attempt in (1, 4, 20):
        sleeps = [policy.sleep_time(attempt) for _ in range(200)]
        assert all(policy.delay(attempt) / 2 <= sleep <= policy.delay(attempt) for sleep in sleeps)
        assert len(set(sleeps)) > 1


def test_without_jitter_sleep_time_is_the_delay() -> None:
    policy = ExponentialBackoffRetryPolicy(IndefiniteRetryPolicy(), base=0.1)
    assert [policy.sleep_time(attempt) for attempt in range(4)] == [0.0, 0.1, 0.2, 0.4]


def test_budget_still_cuts_a_capped_jittered_sleep(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: high)
    remaining = list(RetryPolicy.new(budget=2.0, backoff=0.5, max_delay=1.0, jitter=0.5))
    assert clock.sleeps == pytest.approx([0.5, 1.0, 0.5])
    assert remaining == pytest.approx([2.0, 1.5, 0.5, 0.0])


class RecordedEvent(threading.Event):
    """An event whose waits are recorded and return at once, as if each ran its course."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(0)


def test_stop_event_is_waited_on_instead_of_sleeping(clock: FakeClock) -> None:
    stop = RecordedEvent()
    assert list(RetryPolicy.new(attempts=4, backoff=0.1, stop=stop)) == [None] * 4
    assert stop.waits == pytest.approx([0.1, 0.2, 0.4])
    assert clock.sleeps == []


def test_no_attempt_once_stop_is_set(clock: FakeClock) -> None:
    stop = RecordedEvent()
    attempts = []
    for time_remaining in RetryPolicy.new(attempts=5, backoff=0.1, stop=stop):
        attempts.append(time_remaining)
        if len(attempts) == 2:
            stop.set()
    assert attempts == [None, None]
    assert stop.waits == pytest.approx([0.1, 0.2])

    assert list(RetryPolicy.new(attempts=5, backoff=0.1, stop=stop)) == []


def test_setting_stop_ends_a_long_wait() -> None:
    stop = threading.Event()
    first_attempt = threading.Event()
    attempts: list[float | None] = []

    def retry_for_an_hour() -> None:
        for time_remaining in RetryPolicy.new(backoff=3600.0, stop=stop):
            attempts.append(time_remaining)
            first_attempt.set()

    retrying = threading.Thread(target=retry_for_an_hour)
    retrying.start()
    assert first_attempt.wait(10)
    stop.set()
    retrying.join(10)
    assert not retrying.is_alive()
    assert attempts == [None]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_delay": 0.05}, "max_delay must be at least the backoff"),
        ({"max_delay": float("nan")}, "max_delay must be at least the backoff"),
        ({"jitter": -0.1}, "jitter must be a fraction from 0 to 1"),
        ({"jitter": 1.5}, "jitter must be a fraction from 0 to 1"),
        ({"jitter": float("nan")}, "jitter must be a fraction from 0 to 1"),
    ],
)
def test_backoff_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy.new(backoff=0.1, **options)


@pytest.mark.parametrize(
    "options", [{"max_delay": 1.0}, {"jitter": 0.5}, {"stop": threading.Event()}]
)
def test_backoff_options_need_a_backoff(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="give backoff too"):
        RetryPolicy.new(attempts=3, **options)


def test_new_passes_the_backoff_options_on() -> None:
    stop = threading.Event()
    assert RetryPolicy.new(
        attempts=3, backoff=0.1, max_delay=1.0, jitter=0.5, stop=stop
    ) == ExponentialBackoffRetryPolicy(
        MaximumAttemptsRetryPolicy(IndefiniteRetryPolicy(), 3),
        0.1,
        max_delay=1.0,
        jitter=0.5,
        stop=stop,
    )
