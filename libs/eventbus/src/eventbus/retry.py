"""Trying again until a deadline, written once.

The services wait out the same few things (NATS reconnecting, a consumer
slot freeing up, a record not done yet); each caller says only how long it
may wait, how the pauses grow, which errors are worth another try and what
to log, so the deadline rule cannot drift between copies.

The deadline is kept exactly: a pause that would end past it is cut short,
so the last try happens at the deadline and none after it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def _every_error(exc: Exception) -> bool:
    return True


def _no_error(exc: Exception) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to keep trying and how long to pause between tries.

    `seconds`: the deadline after the first try starts (None: for ever).
    The pause is `first`, doubled after each pause up to `most` (None: the
    same pause every time). `clock` and `sleep` are there so the rule can be
    tested without waiting."""

    seconds: float | None
    first: float
    most: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    retry_on: Callable[[Exception], bool] = _every_error,
    on_retry: Callable[[Exception], object] | None = None,
) -> T:
    """`attempt()`'s result, tried again after an error `retry_on` accepts
    (`on_retry` is told of it first) until `backoff` runs out; then the
    last error propagates."""
    return await _tries(attempt, backoff, retry_on, on_retry, again_on_none=False)  # type: ignore[return-value]


async def polling(
    attempt: Callable[[], Awaitable[T | None]],
    backoff: Backoff,
    *,
    retry_on: Callable[[Exception], bool] = _no_error,
    on_retry: Callable[[Exception], object] | None = None,
) -> T | None:
    """`attempt()`'s first result that is not None, or None once `backoff`
    runs out; errors as in `retrying` (none is retried unless `retry_on`
    says so)."""
    return await _tries(attempt, backoff, retry_on, on_retry, again_on_none=True)


async def _tries(
    attempt: Callable[[], Awaitable[T | None]],
    backoff: Backoff,
    retry_on: Callable[[Exception], bool],
    on_retry: Callable[[Exception], object] | None,
    *,
    again_on_none: bool,
) -> T | None:
    deadline = math.inf if backoff.seconds is None else backoff.clock() + backoff.seconds
    pause = backoff.first
    while True:
        try:
            result = await attempt()
        except Exception as exc:
            if not retry_on(exc) or backoff.clock() >= deadline:
                raise
            if on_retry is not None:
                on_retry(exc)
        else:
            if result is not None or not again_on_none:
                return result
            if backoff.clock() >= deadline:
                return None
        await backoff.sleep(max(0.0, min(pause, deadline - backoff.clock())))
        if backoff.most is not None:
            pause = min(pause * 2, backoff.most)
