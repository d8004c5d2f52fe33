"""What ``RateLimitLayer(limiters=...)`` accepts, turned into lamina limiters.

A :class:`~lamina.layers.rate_limit.BaseLimiter` as is; a
:class:`~lamina.layers.rate_limit.RateLimiter` (the reference's name) as its limiter; an
``aiolimiter.AsyncLimiter`` wrapped in an
:class:`~lamina.layers.rate_limit.aiolimiter_store.AiolimiterLimiter` (aiolimiter is
imported only if one is given).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..._errors import ConfigError
from .aiolimiter_store import AiolimiterLimiter, is_async_limiter
from .limiter import BaseLimiter
from .reference import RateLimiter

__all__ = ["as_limiter", "as_limiters"]


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
