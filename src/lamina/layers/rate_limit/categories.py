"""The reference's limiter API: ``RateLimit``, ``RateLimiterConfig``, ``InMemoryRateLimiter``.

:class:`CategoryLimiter` is what the in-memory and the Redis flavour share: a category's
limiters, built from the config on first use and then reused.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

from ... import _validate as check
from ..._clock import Clock, default_clock
from ..._errors import ConfigError
from .bucket import unit_of
from .limiter import BaseLimiter, Limiter, acquire_all, try_acquire_all
from .store import LimitStatus

__all__ = [
    "CategoryLimiter",
    "InMemoryRateLimiter",
    "RateLimit",
    "RateLimitStatus",
    "RateLimiterConfig",
]

L = TypeVar("L", bound=BaseLimiter)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` operations (total weight) per ``interval`` seconds.

    ``burst`` (default ``limit``) caps how many go at one instant; with a
    smaller burst the rest are spread over the interval.
    """

    limit: int
    interval: float = 1.0
    burst: int | None = None

    def __post_init__(self) -> None:
        interval = check.seconds(self.interval, "interval")
        check.integer(
            self.limit,
            "limit",
            low=1,
            high=check.MAX_RATE,
            what=f"a whole number of calls {unit_of(interval)} (interval={interval:g}s)",
        )
        if self.burst is not None:
            check.integer(
                self.burst, "burst", low=1, high=check.MAX_COUNT, what="a number of calls at once"
            )

    def limiter(self, *, clock: Clock | None = None, name: str | None = None) -> Limiter:
        """A fresh :class:`Limiter` enforcing this rate."""
        return Limiter(self.limit, self.interval, burst=self.burst, clock=clock, name=name)


def _rates(value: object, field_name: str) -> tuple[RateLimit, ...]:
    if isinstance(value, RateLimit):
        return (value,)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ConfigError("must be a list of RateLimit", field=field_name)
    for item in value:
        if not isinstance(item, RateLimit):
            raise ConfigError(f"{item!r} is not a RateLimit", field=field_name)
    return tuple(value)


@dataclass(frozen=True, slots=True)
class RateLimiterConfig:
    """Rates per category; a category not listed gets its own limits built from ``default_rates``.

    A category with no rates at all is unlimited.
    """

    default_rates: Sequence[RateLimit] = ()
    categories: Mapping[str, Sequence[RateLimit]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_rates", _rates(self.default_rates, "default_rates"))
        if not isinstance(self.categories, Mapping):
            raise ConfigError("must be a mapping of name -> rates", field="categories")
        cats = {str(k): _rates(v, f"categories.{k}") for k, v in self.categories.items()}
        object.__setattr__(self, "categories", MappingProxyType(cats))

    def rates_for(self, category: str) -> tuple[RateLimit, ...]:
        """The rates that apply to ``category``."""
        rates = self.categories.get(category)
        return tuple(rates) if rates is not None else tuple(self.default_rates)


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """A category's state: one :class:`LimitStatus` per rate."""

    category: str
    limits: tuple[LimitStatus, ...]

    @property
    def available(self) -> int | None:
        """Weight that could go now (the tightest rate); ``None`` if unlimited."""
        return min((s.available for s in self.limits), default=None)

    @property
    def retry_after(self) -> float:
        """Seconds until one more unit fits every rate."""
        return max((s.retry_after for s in self.limits), default=0.0)


class CategoryLimiter(ABC, Generic[L]):
    """Rate limiting per category: each category gets the limiters of its rates in
    ``config``, built on first use and then shared. ``acquire`` waits (fairly, first
    come first served) until every rate of the category admits ``weight``.
    """

    __slots__ = ("_limiters", "clock", "config")

    def __init__(self, config: RateLimiterConfig | None = None, *, clock: Clock | None = None):
        if config is None:
            config = RateLimiterConfig()
        if not isinstance(config, RateLimiterConfig):
            raise ConfigError("must be a RateLimiterConfig", field="config")
        self.config = config
        self.clock: Clock = clock if clock is not None else default_clock
        self._limiters: dict[str, tuple[L, ...]] = {}

    @abstractmethod
    def _limiter(self, rate: RateLimit, category: str) -> L:
        """A fresh limiter enforcing ``rate`` for ``category``."""

    def limiters(self, category: str) -> tuple[L, ...]:
        """The limiters of ``category`` (created on first use, then shared)."""
        found = self._limiters.get(category)
        if found is None:
            rates = self.config.rates_for(category)
            found = self._limiters[category] = tuple(self._limiter(r, category) for r in rates)
        return found

    async def acquire(
        self, category: str, weight: int = 1, *, max_wait: float | None = None
    ) -> float:
        """Wait for capacity in all of the category's rates; return the seconds waited.

        Raises :class:`lamina.RateLimitExceeded` if that would take more than
        ``max_wait`` seconds, and ``ConfigError`` at once for a weight larger
        than a rate's capacity.
        """
        limiters = self.limiters(category)
        if not limiters:
            return 0.0
        return await acquire_all(limiters, weight, max_wait=max_wait)


class InMemoryRateLimiter(CategoryLimiter[Limiter]):
    """Per-category rate limiting in one process.

    ``await acquire(category, weight)`` waits (fairly, first come first
    served) until every rate of the category admits ``weight``;
    ``try_acquire`` never waits. :meth:`limiters` hands the underlying
    :class:`Limiter` objects to a :class:`~lamina.layers.rate_limit.RateLimitLayer`.
    """

    __slots__ = ()

    def _limiter(self, rate: RateLimit, category: str) -> Limiter:
        return rate.limiter(clock=self.clock, name=category)

    def try_acquire(self, category: str, weight: int = 1) -> bool:
        """Take ``weight`` now if every rate admits it and nobody is waiting."""
        limiters = self.limiters(category)
        return try_acquire_all(limiters, weight) if limiters else True

    def get_status(self, category: str) -> RateLimitStatus:
        """Capacity left and time to the next slot, per rate."""
        return RateLimitStatus(category, tuple(lim.status() for lim in self.limiters(category)))

    def reset(self, category: str | None = None) -> None:
        """Forget past admissions of one category, or of all."""
        names = [category] if category is not None else list(self._limiters)
        for name in names:
            for limiter in self._limiters.get(name, ()):
                limiter.reset()

    def __repr__(self) -> str:
        waiting = sum(len(lim.store.queue) for group in self._limiters.values() for lim in group)
        return f"<InMemoryRateLimiter categories={len(self._limiters)} waiters={waiting}>"
