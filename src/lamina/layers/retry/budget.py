"""A retry budget: retries may not exceed a share of the calls, Finagle/Tower style."""

from __future__ import annotations

import math

from ... import _validate as check
from ..._clock import Clock, default_clock

__all__ = ["SLICES", "RetryBudget"]

SLICES = 10
"""Slices a :class:`RetryBudget`'s window is counted in."""


class RetryBudget:
    """Retries may not exceed ``percent`` of the calls made in the last ``ttl`` seconds,
    plus a floor of ``min_per_second`` retries per second (Finagle/Tower style).

    One budget is shared by every call through the layer that holds it, so a
    struggling server sees at most ``(1 + percent)`` times its normal load.

    Calls and retries are counted in :data:`SLICES` slices of ``ttl / SLICES`` seconds
    each (as Finagle's windowed adder does), so memory is fixed whatever the call rate;
    a call or retry is forgotten between ``0.9 * ttl`` and ``ttl`` after it was made.
    """

    __slots__ = (
        "_call_slices",
        "_calls",
        "_retries",
        "_retry_slices",
        "_slice",
        "_width",
        "clock",
        "min_per_second",
        "percent",
        "ttl",
    )

    def __init__(
        self,
        *,
        ttl: float = 10.0,
        min_per_second: float = 10.0,
        percent: float = 0.2,
        clock: Clock | None = None,
    ) -> None:
        self.ttl = check.seconds(ttl, "ttl")
        self.min_per_second = check.number(
            min_per_second,
            "min_per_second",
            low=0,
            high=check.MAX_RATE,
            what="a number of retries per second",
        )
        self.percent = check.fraction(percent, "percent", high=1000)
        self.clock = clock or default_clock
        self._width = self.ttl / SLICES
        self._call_slices = [0] * SLICES
        self._retry_slices = [0] * SLICES
        self._calls = 0  # sums over the slices in the window
        self._retries = 0
        self._slice: int | None = None  # index of the newest slice

    def deposit(self) -> None:
        """Record one call (its first attempt)."""
        at = self._advance(self.clock.now())
        self._call_slices[at] += 1
        self._calls += 1

    def withdraw(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        at = self._advance(self.clock.now())
        if self._balance() < 1.0:
            return False
        self._retry_slices[at] += 1
        self._retries += 1
        return True

    @property
    def remaining(self) -> int:
        """How many retries the budget would allow right now."""
        self._advance(self.clock.now())
        return max(0, math.floor(self._balance()))

    def _balance(self) -> float:
        floor = self.min_per_second * self.ttl
        return floor + self.percent * self._calls - self._retries

    def _advance(self, now: float) -> int:
        """Move the window to ``now`` (emptying the slices it leaves); the ring index of
        the current slice."""
        current = math.floor(now / self._width)
        last = self._slice
        if last is None or current - last >= SLICES:
            if self._calls or self._retries:
                self._call_slices = [0] * SLICES
                self._retry_slices = [0] * SLICES
                self._calls = self._retries = 0
        elif current > last:
            for index in range(last + 1, current + 1):
                ring = index % SLICES
                self._calls -= self._call_slices[ring]
                self._retries -= self._retry_slices[ring]
                self._call_slices[ring] = self._retry_slices[ring] = 0
        else:  # the same slice, or a clock that stepped back: count it in the newest
            return last % SLICES
        self._slice = current
        return current % SLICES

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ttl={self.ttl}, min_per_second={self.min_per_second}, "
            f"percent={self.percent}, calls={self._calls}, retries={self._retries})"
        )
