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
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

# 2.0 ** 1024 no longer fits a float; any cap on the delay has applied long before.
_MAX_EXPONENT = 1023


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
        *,
        max_delay: float | None = None,
        jitter: float = 0.0,
        stop: threading.Event | None = None,
    ) -> RetryPolicy:
        """Create a new retry policy with the given constraints.

        With no arguments the policy retries indefinitely.

        :param attempts: The maximum number of times the operation can be
            attempted.
        :param budget: The maximum amount of time, in seconds, that the local
            service will wait for the operation to succeed.
        :param backoff: The base amount of time, in seconds, for exponential
            backoff between attempts: ``backoff * 2**(attempt - 1)`` is slept
            before each attempt after the first, but never more than what is
            left of the budget.
        :param max_delay: With ``backoff``: the longest single delay, in seconds.
        :param jitter: With ``backoff``: the fraction of each delay that is
            random, from 0 (none, the default) to 1.
        :param stop: With ``backoff``: an event that, once set, cuts the delay
            short and ends the attempts.
        :raises ValueError: if ``attempts`` is less than 1, ``budget`` is
            negative, ``backoff`` is not positive, or a backoff option is
            invalid or given without ``backoff``.

        .. versionadded:: 0.31
           ``max_delay``, ``jitter`` and ``stop``; see
           :class:`ExponentialBackoffRetryPolicy`.
        """
        policy: RetryPolicy = IndefiniteRetryPolicy()
        if attempts is not None:
            policy = MaximumAttemptsRetryPolicy(policy, attempts)
        if budget is not None:
            policy = TimeBudgetRetryPolicy(policy, budget)
        if backoff is not None:
            # Outermost, so that it sees the remaining budget and can cut its sleep.
            policy = ExponentialBackoffRetryPolicy(
                policy, backoff, max_delay=max_delay, jitter=jitter, stop=stop
            )
        elif max_delay is not None or jitter or stop is not None:
            raise ValueError("max_delay, jitter and stop shape a backoff: give backoff too")
        return policy


@dataclass(frozen=True)
class IndefiniteRetryPolicy(RetryPolicy):
    """Retry immediately forever, with no time budget: the base of every composed policy."""

    def yield_attempts(self) -> Iterator[float | None]:
        return itertools.repeat(None)


@dataclass(frozen=True, init=False)
class MaximumAttemptsRetryPolicy(RetryPolicy):
    """Stop ``policy`` after at most ``attempts`` attempts.

    :param policy: The policy to constrain, kept as ``subpolicy``.
    :param attempts: The maximum number of attempts, at least 1.
    :raises ValueError: if ``attempts`` is less than 1.
    """

    subpolicy: RetryPolicy
    attempts: int

    def __init__(self, policy: RetryPolicy, attempts: int) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts!r}")
        object.__setattr__(self, "subpolicy", policy)
        object.__setattr__(self, "attempts", attempts)

    def yield_attempts(self) -> Iterator[float | None]:
        return itertools.islice(self.subpolicy, self.attempts)


@dataclass(frozen=True, init=False)
class TimeBudgetRetryPolicy(RetryPolicy):
    """Stop ``policy`` once ``budget`` seconds have passed.

    The first attempt is always made, and is given the whole budget: with a
    budget of zero, exactly one attempt is made, with zero seconds. The clock
    starts when iteration starts, and the time left is measured with
    :func:`time.monotonic` so that wall-clock changes do not affect it. If the
    subpolicy has a budget of its own, the smaller of the two is yielded.

    :param policy: The policy to constrain, kept as ``subpolicy``.
    :param budget: The time budget in seconds; zero or more.
    :raises ValueError: if ``budget`` is negative or NaN.

    .. versionchanged:: 0.31
       The time left is measured with :func:`time.monotonic` rather than
       :func:`time.time`. The first attempt is taken from ``policy`` like the
       others, so ``attempts=3, budget=...`` makes at most three attempts (the
       original made a fourth).
    """

    subpolicy: RetryPolicy
    budget: float

    def __init__(self, policy: RetryPolicy, budget: float) -> None:
        if not (budget >= 0):  # also rejects NaN
            raise ValueError(f"budget must be a non-negative number of seconds, not {budget!r}")
        object.__setattr__(self, "subpolicy", policy)
        object.__setattr__(self, "budget", budget)

    def yield_attempts(self) -> Iterator[float | None]:
        start = time.monotonic()
        for attempt, inner_remaining in enumerate(self.subpolicy):
            if attempt == 0:
                remaining = self.budget
            else:
                remaining = self.budget - (time.monotonic() - start)
                if remaining <= 0:
                    return
            if inner_remaining is not None:
                remaining = min(remaining, inner_remaining)
            yield remaining


@dataclass(frozen=True, init=False)
class ExponentialBackoffRetryPolicy(RetryPolicy):
    """Sleep between the attempts of ``policy``, doubling the delay each time.

    This is the one place where Baseplate computes a backoff: the trace
    publisher and the secrets fetcher use it too.

    Nothing is slept before the first attempt; before attempt ``k`` (counting
    from zero) the policy sleeps :meth:`sleep_time` seconds: ``base * 2**(k -
    1)``, at most ``max_delay``, less a random part of up to ``jitter`` of it.
    It sleeps with :func:`time.sleep`, so that gevent's monkey-patching makes
    it cooperative, or, given ``stop``, by waiting on that event, so that a
    process asked to stop ends its retries at once: once ``stop`` is set no
    further attempt is yielded, not even the first.

    When the subpolicy has a budget, the sleep is cut to the time it has left,
    and the time yielded is what remains after the sleep: the lower remaining
    time takes over, and the attempt is still made, as in the original. The
    subpolicy then decides whether another attempt may follow. The time
    yielded may therefore be zero: an operation should give such an attempt
    the shortest timeout it allows rather than none (a socket timeout of zero
    means "do not block" to :meth:`socket.socket.settimeout`).

    >>> policy = ExponentialBackoffRetryPolicy(IndefiniteRetryPolicy(), 1.0, max_delay=60.0)
    >>> [policy.delay(attempt) for attempt in range(9)]
    [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]

    :param policy: The policy to space out, kept as ``subpolicy``.
    :param base: The first delay in seconds; positive and finite.
    :param max_delay: The longest delay in seconds, at least ``base``; none
        by default.
    :param jitter: The fraction of each delay that is random, from 0 to 1: a
        delay ``d`` becomes one drawn evenly from ``d * (1 - jitter)`` to
        ``d``, so that many clients failing together do not retry together.
        0 (the default) keeps delays exact.
    :param stop: Wait on this event instead of sleeping, and make no attempt
        once it is set.
    :raises ValueError: if ``base`` is not positive and finite, ``max_delay``
        is less than ``base``, or ``jitter`` is outside 0 to 1.

    .. versionadded:: 0.31
       ``max_delay``, ``jitter``, ``stop``, :meth:`delay` and :meth:`sleep_time`.
    """

    subpolicy: RetryPolicy
    base: float
    max_delay: float | None
    jitter: float
    stop: threading.Event | None

    def __init__(
        self,
        policy: RetryPolicy,
        base: float,
        *,
        max_delay: float | None = None,
        jitter: float = 0.0,
        stop: threading.Event | None = None,
    ) -> None:
        if not (base > 0) or math.isinf(base):
            raise ValueError(f"backoff must be a positive number of seconds, not {base!r}")
        if max_delay is not None and not (max_delay >= base):  # also rejects NaN
            raise ValueError(
                f"max_delay must be at least the backoff ({base!r}), not {max_delay!r}"
            )
        if not (0 <= jitter <= 1):
            raise ValueError(f"jitter must be a fraction from 0 to 1, not {jitter!r}")
        object.__setattr__(self, "subpolicy", policy)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "max_delay", max_delay)
        object.__setattr__(self, "jitter", jitter)
        object.__setattr__(self, "stop", stop)

    def delay(self, attempt: int) -> float:
        """The longest pause before attempt ``attempt``, counting from zero.

        0 before the first attempt, then ``base * 2**(attempt - 1)``, at most
        ``max_delay``. Delays are exact; :meth:`sleep_time` adds the jitter.
        """
        if attempt < 1:
            return 0.0
        delay = self.base * 2.0 ** min(attempt - 1, _MAX_EXPONENT)
        return delay if self.max_delay is None else min(delay, self.max_delay)

    def sleep_time(self, attempt: int) -> float:
        """The pause the policy takes before attempt ``attempt``: :meth:`delay` with jitter.

        Without jitter this is :meth:`delay`; with it, a fresh random draw
        each call. The budget of the subpolicy may still cut it.
        """
        delay = self.delay(attempt)
        if self.jitter:
            delay *= random.uniform(1.0 - self.jitter, 1.0)
        return delay

    def yield_attempts(self) -> Iterator[float | None]:
        for attempt, remaining in enumerate(self.subpolicy):
            time_left = remaining
            if attempt:
                delay = self.sleep_time(attempt)
                if remaining is not None:
                    delay = min(delay, remaining)
                    time_left = remaining - delay
                if delay > 0:
                    self._wait(delay)
            if self.stop is not None and self.stop.is_set():
                return
            yield time_left

    def _wait(self, seconds: float) -> None:
        if self.stop is None:
            time.sleep(seconds)
        else:
            self.stop.wait(seconds)
