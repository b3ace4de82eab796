"""eventbus.retry: the one deadline/backoff loop, run on a fake clock (the
pauses it asks for are recorded and "slept" at once), so each rule is
checked exactly and nothing waits."""

from __future__ import annotations

import pytest

from eventbus.retry import Backoff, polling, retrying


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Flaky:
    """Fails `failures` times (with `error`), then returns `value`;
    each try may take `takes` seconds of the clock."""

    def __init__(self, clock: Clock, failures: int, value: object = "ok", *, error: Exception | None = None,
                 takes: float = 0.0) -> None:
        self.clock, self.failures, self.value, self.takes = clock, failures, value, takes
        self.error = error or ConnectionError("away")
        self.tries: list[float] = []

    async def __call__(self) -> object:
        self.tries.append(self.clock.now)
        self.clock.now += self.takes
        if len(self.tries) <= self.failures:
            raise self.error
        return self.value


def backoff(clock: Clock, seconds: float | None, first: float, most: float | None = None) -> Backoff:
    return Backoff(seconds, first, most, clock=clock, sleep=clock.sleep)


async def test_a_first_success_returns_at_once():
    clock = Clock()
    assert await retrying(Flaky(clock, 0), backoff(clock, 10, 0.2)) == "ok"
    assert clock.slept == []


async def test_pauses_double_up_to_the_most_and_the_last_is_cut_to_the_deadline():
    clock = Clock()
    attempt, told = Flaky(clock, failures=100), []
    with pytest.raises(ConnectionError):
        await retrying(attempt, backoff(clock, 10, 0.2, most=2.0), on_retry=told.append)
    assert clock.slept == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 1.0])
    assert attempt.tries[-1] == pytest.approx(1010.0)  # the last try is at the deadline, none after it
    assert len(told) == len(attempt.tries) - 1  # every error but the one that propagates


async def test_without_a_most_the_pause_stays_the_same():
    clock = Clock()
    with pytest.raises(ConnectionError):
        await retrying(Flaky(clock, failures=100), backoff(clock, 1.0, 0.3))
    assert clock.slept == pytest.approx([0.3, 0.3, 0.3, 0.1])


async def test_an_error_retry_on_refuses_propagates_without_a_pause():
    clock = Clock()
    attempt, told = Flaky(clock, failures=3, error=ValueError("bad")), []
    with pytest.raises(ValueError):
        await retrying(attempt, backoff(clock, 10, 0.2), retry_on=lambda exc: isinstance(exc, ConnectionError),
                       on_retry=told.append)
    assert (len(attempt.tries), clock.slept, told) == (1, [], [])


async def test_success_after_errors_returns_the_result():
    clock = Clock()
    attempt = Flaky(clock, failures=2, value=None)  # None is a result like any other here
    assert await retrying(attempt, backoff(clock, 10, 0.2, most=2.0)) is None
    assert clock.slept == pytest.approx([0.2, 0.4])


async def test_no_deadline_tries_for_ever():
    clock = Clock()
    assert await retrying(Flaky(clock, failures=500), backoff(clock, None, 1.0)) == "ok"
    assert clock.slept == [1.0] * 500


async def test_zero_seconds_is_one_try():
    clock = Clock()
    attempt = Flaky(clock, failures=1)
    with pytest.raises(ConnectionError):
        await retrying(attempt, backoff(clock, 0, 0.2))
    assert (len(attempt.tries), clock.slept) == (1, [])


async def test_a_try_that_ends_past_the_deadline_is_the_last():
    clock = Clock()
    attempt = Flaky(clock, failures=100, takes=4.0)
    with pytest.raises(ConnectionError):
        await retrying(attempt, backoff(clock, 5, 0.5))
    assert attempt.tries == pytest.approx([1000.0, 1004.5])
    assert clock.slept == pytest.approx([0.5])


class NotYet:
    """Returns None `times` times, then `value`."""

    def __init__(self, clock: Clock, times: int, value: object) -> None:
        self.clock, self.times, self.value = clock, times, value
        self.tries: list[float] = []

    async def __call__(self) -> object:
        self.tries.append(self.clock.now)
        return None if len(self.tries) <= self.times else self.value


async def test_polling_returns_the_first_result_that_is_not_none():
    clock = Clock()
    assert await polling(NotYet(clock, 3, False), backoff(clock, 10, 0.1)) is False
    assert clock.slept == pytest.approx([0.1] * 3)


async def test_polling_gives_none_after_a_last_look_at_the_deadline():
    clock = Clock()
    attempt = NotYet(clock, 100, "late")
    assert await polling(attempt, backoff(clock, 0.25, 0.1)) is None
    assert attempt.tries == pytest.approx([1000.0, 1000.1, 1000.2, 1000.25])


async def test_polling_retries_errors_only_when_told():
    clock = Clock()
    with pytest.raises(ConnectionError):
        await polling(Flaky(clock, failures=1), backoff(clock, 10, 0.1))
    assert clock.slept == []
    clock = Clock()
    assert await polling(Flaky(clock, failures=2), backoff(clock, 10, 0.1), retry_on=lambda exc: True) == "ok"
    assert clock.slept == pytest.approx([0.1, 0.1])


async def test_polling_an_error_at_the_deadline_propagates():
    clock = Clock()
    with pytest.raises(ConnectionError):
        await polling(Flaky(clock, failures=100), backoff(clock, 0.3, 0.2), retry_on=lambda exc: True)
    assert clock.slept == pytest.approx([0.2, 0.1])
