"""The one place lamina's configuration numbers are checked (ConfigError naming the field).

Every duration, count and rate a config or a layer takes goes through these checks, so
a value that is not finite, is a denormal, is a bool, or is absurd ends in
:class:`lamina.ConfigError` at construction instead of a ``ZeroDivisionError``,
``OverflowError`` or a hang at run time. The bounds (docs/security.md):

* durations: :data:`MIN_SECONDS` (1 ms) to :data:`MAX_SECONDS` (30 days), 0 where a
  field allows it; every Redis key's TTL is then a few times 30 days in milliseconds;
* counts: 1 (or 0) to :data:`MAX_COUNT`; retries up to :data:`MAX_RETRIES`;
  byte sizes up to :data:`MAX_BYTES`;
* rates: above 0, at most :data:`MAX_RATE` per period, and at least one call per
  :data:`MAX_SECONDS` (a slower "rate" is no limit one could wait for);
* fractions: 0 to 1.
"""

from __future__ import annotations

import math
import sys

from ._errors import ConfigError

__all__ = [
    "MAX_BYTES",
    "MAX_COUNT",
    "MAX_RATE",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "MIN_SECONDS",
    "count",
    "fraction",
    "number",
    "positive_number",
    "rate",
    "seconds",
]

MIN_SECONDS = 0.001
"""The shortest duration lamina accepts (1 ms); 0 only where a field says so."""
MAX_SECONDS = 30 * 24 * 3600.0
"""The longest duration lamina accepts: 30 days (2,592,000 s)."""
MAX_COUNT = 1_000_000
"""The largest count (burst, threshold, concurrency) lamina accepts."""
MAX_RETRIES = 100
"""The most retries (extra attempts) of one call."""
MAX_RATE = 1_000_000_000
"""The most calls per period a rate limit may allow."""
MAX_BYTES = 1 << 40
"""The largest byte size lamina accepts (1 TiB)."""


def _reject(message: str, value: object, field: str, endpoint: str | None) -> ConfigError:
    return ConfigError(f"{message}, got {value!r}", field=field, endpoint=endpoint)


def number(
    value: object,
    field: str,
    *,
    low: float,
    high: float,
    allow_zero: bool = False,
    what: str = "a number",
    endpoint: str | None = None,
) -> float:
    """``value`` as a float if it is a real number (not a bool) in ``[low, high]``
    (or exactly 0 with ``allow_zero``), finite and not a denormal; else a ConfigError
    whose message names the range."""
    zero = "0 or " if allow_zero else ""
    expected = f"{zero}{what} between {_g(low)} and {_g(high)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _reject(f"must be {expected}", value, field, endpoint)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _reject(f"must be finite: {expected}", value, field, endpoint)
        if value != 0 and abs(value) < sys.float_info.min:
            raise _reject(f"must not be a denormal number: {expected}", value, field, endpoint)
    if value == 0 and allow_zero:
        return 0.0
    if not low <= value <= high:  # exact for ints of any size (no float conversion)
        raise _reject(f"must be {expected}", value, field, endpoint)
    return float(value)


def seconds(
    value: object, field: str, *, allow_zero: bool = False, endpoint: str | None = None
) -> float:
    """A duration: 1 ms to 30 days (or 0 with ``allow_zero``)."""
    return number(
        value,
        field,
        low=MIN_SECONDS,
        high=MAX_SECONDS,
        allow_zero=allow_zero,
        what="a duration in seconds",
        endpoint=endpoint,
    )


def count(
    value: object,
    field: str,
    *,
    low: int = 1,
    high: int = MAX_COUNT,
    endpoint: str | None = None,
) -> int:
    """An int (not a bool, not a float) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _reject(f"must be an integer between {low} and {high}", value, field, endpoint)
    return value


def rate(
    value: object,
    field: str,
    *,
    period: float,
    unit: str | None = None,
    endpoint: str | None = None,
) -> float:
    """Calls per ``period`` seconds: above 0, at most :data:`MAX_RATE`, and at least
    one call per :data:`MAX_SECONDS` (``period / value`` is a duration too)."""
    low = period / MAX_SECONDS
    what = f"a number of calls {unit or f'per {_g(period)} s'}"
    return number(value, field, low=low, high=MAX_RATE, what=what, endpoint=endpoint)


def fraction(value: object, field: str, *, high: float = 1.0, endpoint: str | None = None) -> float:
    """A share: 0 to ``high`` (1 unless said otherwise)."""
    return number(
        value, field, low=0.0, high=high, allow_zero=True, what="a fraction", endpoint=endpoint
    )


def positive_number(value: object, field: str, *, endpoint: str | None = None) -> float:
    """A timeout in seconds: the bounds of :func:`seconds` (kept for existing callers)."""
    return seconds(value, field, endpoint=endpoint)


def _g(bound: float) -> str:
    """A bound as people read it: ``0.001 (1 ms)``, ``2592000 (30 days)``, ``2.31e-05``."""
    if bound == MAX_SECONDS:
        return "2592000 (30 days)"
    if bound == MIN_SECONDS:
        return "0.001 (1 ms)"
    if isinstance(bound, int) or float(bound).is_integer():
        return str(int(bound))
    return f"{bound:.3g}"
