"""Policies for retrying an operation safely.

.. note::

    This module is a low-level helper; many client libraries have
    protocol-aware retry logic built in. Check your library before using this.

A policy is a small immutable value. :meth:`RetryPolicy.new` builds one by
wrapping an indefinite base policy in the constraints asked for, and iterating
over it drives the attempts.
"""

from __future__ import annotations

import abc
import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass


class RetryPolicy(abc.ABC):
    """A policy for retrying operations.

    Policies are meant to be used as an iterable; each iteration is one
    attempt and gives the seconds left to spend on it, or :py:data:`None` when
    the policy has no time budget::

        for time_remaining in RetryPolicy.new(attempts=3, budget=2.0, backoff=0.1):
            try:
                some_operation.do(timeout=time_remaining)
                break
            except SomeError:
                pass
        else:
            raise MaxRetriesError

    The ``else`` branch runs only when the policy gave up, so it is the place
    to raise. A policy holds no iteration state: the same policy can drive any
    number of independent loops, including concurrent ones.
    """

    @abc.abstractmethod
    def yield_attempts(self) -> Iterator[float | None]:
        """Return an iterator which controls attempts.

        On each iteration, the iterator yields the number of seconds left to
        retry, which should be used as the timeout of the operation being
        carried out. If there is no maximum time remaining, :py:data:`None` is
        yielded instead.

        The iterator raises :py:exc:`StopIteration` once the operation should
        not be retried any further.
        """

    def __iter__(self) -> Iterator[float | None]:
        """Convenience alias for :meth:`yield_attempts`.

        This allows policies to be directly iterated over.
        """
        return self.yield_attempts()

    @staticmethod
    def new(
        attempts: int | None = None,
        budget: float | None = None,
        backoff: float | None = None,
    ) -> RetryPolicy:
        """Create a new retry policy with the given constraints.

        With no arguments the policy retries indefinitely.

        :param attempts: The maximum number of times the operation can be
            attempted.
        :param budget: The maximum amount of time, in seconds, that the local
            service will wait for the operation to succeed.
        :param backoff: The base amount of time, in seconds, for exponential
            backoff between attempts: ``backoff * 2**(attempt - 1)`` is slept
            before each attempt after the first.
        :raises ValueError: if ``attempts`` is less than 1, or ``budget`` or
            ``backoff`` is not positive.
        """
        policy: RetryPolicy = IndefiniteRetryPolicy()
        if attempts is not None:
            policy = MaximumAttemptsRetryPolicy(policy, attempts)
        if budget is not None:
            policy = TimeBudgetRetryPolicy(policy, budget)
        if backoff is not None:
            # Outermost, so that it sees the remaining budget and can cap its sleep.
            policy = ExponentialBackoffRetryPolicy(policy, backoff)
        return policy


@dataclass(frozen=True)
class IndefiniteRetryPolicy(RetryPolicy):
    """Retry forever, with no time budget: the base of every composed policy.

    .. versionadded:: 0.31
    """

    def yield_attempts(self) -> Iterator[float | None]:
        return itertools.repeat(None)


@dataclass(frozen=True)
class MaximumAttemptsRetryPolicy(RetryPolicy):
    """Stop ``subpolicy`` after at most ``attempts`` attempts.

    .. versionadded:: 0.31
    """

    subpolicy: RetryPolicy
    attempts: int

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts!r}")

    def yield_attempts(self) -> Iterator[float | None]:
        return itertools.islice(self.subpolicy, self.attempts)


@dataclass(frozen=True)
class TimeBudgetRetryPolicy(RetryPolicy):
    """Stop ``subpolicy`` once ``budget`` seconds have passed.

    The clock starts when iteration starts, and the time left is measured with
    :func:`time.monotonic` so that wall-clock changes do not affect it. If the
    subpolicy has a budget of its own, the smaller of the two is yielded.

    .. versionadded:: 0.31
    """

    subpolicy: RetryPolicy
    budget: float

    def __post_init__(self) -> None:
        if not (self.budget > 0):  # also rejects NaN
            raise ValueError(f"budget must be a positive number of seconds, not {self.budget!r}")

    def yield_attempts(self) -> Iterator[float | None]:
        start = time.monotonic()
        for inner_remaining in self.subpolicy:
            remaining = self.budget - (time.monotonic() - start)
            if inner_remaining is not None:
                remaining = min(remaining, inner_remaining)
            if remaining <= 0:
                return
            yield remaining


@dataclass(frozen=True)
class ExponentialBackoffRetryPolicy(RetryPolicy):
    """Sleep between the attempts of ``subpolicy``, doubling the delay each time.

    Nothing is slept before the first attempt; before attempt ``k`` (counting
    from zero) the policy sleeps ``base * 2**(k - 1)`` seconds with
    :func:`time.sleep`, so that gevent's monkey-patching makes it cooperative.
    When the subpolicy has a budget, the time yielded is what is left after
    the sleep, and if the delay would use up the whole budget the policy stops
    at once rather than sleep for nothing.

    .. versionadded:: 0.31
    """

    subpolicy: RetryPolicy
    base: float

    def __post_init__(self) -> None:
        if not (self.base > 0) or math.isinf(self.base):
            raise ValueError(f"backoff must be a positive number of seconds, not {self.base!r}")

    def yield_attempts(self) -> Iterator[float | None]:
        for attempt, remaining in enumerate(self.subpolicy):
            if attempt == 0:
                yield remaining
                continue
            delay = self.base * 2 ** (attempt - 1)
            if remaining is not None and delay >= remaining:
                return  # the sleep would leave no time for the attempt
            time.sleep(delay)
            yield None if remaining is None else remaining - delay
