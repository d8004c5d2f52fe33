"""What ``RateLimitLayer(limiters=...)`` accepts, turned into lamina limiters.

A :class:`~lamina.layers.rate_limit.BaseLimiter` as is; a
:class:`~lamina.layers.rate_limit.RateLimiter` (the reference's name) as its limiter; an
``aiolimiter.AsyncLimiter`` wrapped in an
:class:`~lamina.layers.rate_limit.aiolimiter_store.AiolimiterLimiter` (aiolimiter is
imported only if one is given).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..._errors import ConfigError
from . import limiter as _limiter
from .aiolimiter_store import AiolimiterLimiter, is_async_limiter
from .limiter import BaseLimiter
from .reference import RateLimiter

if TYPE_CHECKING:
    from ..._core import Request

__all__ = ["acquire_all", "as_limiter", "as_limiters", "try_acquire_all"]


def as_limiter(value: object) -> BaseLimiter:
    """``value`` as a lamina limiter, or ``ConfigError(field="limiters")``."""
    if isinstance(value, BaseLimiter):
        return value
    if isinstance(value, RateLimiter):
        return value.limiter
    if is_async_limiter(value):
        return AiolimiterLimiter(value)
    raise ConfigError(
        f"{type(value).__name__} is not a limiter (a lamina Limiter, RateLimiter, "
        "RedisLimiter or an aiolimiter.AsyncLimiter)",
        field="limiters",
    )


def as_limiters(value: object) -> tuple[BaseLimiter, ...]:
    """One limiter or a sequence of them, each through :func:`as_limiter`."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(as_limiter(item) for item in value)
    return (as_limiter(value),)


async def acquire_all(
    limiters: Sequence[object],
    weight: int = 1,
    *,
    max_wait: float | None = None,
    deadline: float | None = None,
    request: Request | None = None,
) -> float:
    """:func:`lamina.layers.rate_limit.limiter.acquire_all` over what
    ``RateLimitLayer(limiters=...)`` takes: lamina limiters, a :class:`RateLimiter`, an
    ``aiolimiter.AsyncLimiter``. Waits until every limit admits ``weight``; returns the
    seconds waited or raises :class:`lamina.RateLimitExceeded` past ``max_wait``
    (seconds) or the ``deadline``."""
    found = as_limiters(limiters)
    return await _limiter.acquire_all(
        found, weight, max_wait=max_wait, deadline=deadline, request=request
    )


def try_acquire_all(limiters: Sequence[object], weight: int = 1) -> bool:
    """Take ``weight`` from every limiter now if all admit it and none has waiters;
    in-memory limiters only (a ``Limiter``, a :class:`RateLimiter`)."""
    found = as_limiters(limiters)
    return _limiter.try_acquire_all(found, weight)  # type: ignore[arg-type]  # checked there
