"""The one place lamina checks configuration values (a ConfigError naming the field).

Import it as ``from lamina import _validate as check`` and write
``check.seconds(timeout, "timeout")``. Every check returns the value (a float for
real numbers), so ``self.ttl = check.seconds(ttl, "ttl")`` reads as the rule. A value
that is the wrong type, not finite, a denormal, a bool where a number is due, or out of
range raises :class:`lamina.ConfigError` at construction (never a ``ZeroDivisionError``,
``OverflowError`` or a hang at run time), worded ``<field>: must be <rule>, got <value>``
with the unit and the range in the rule. The bounds (docs/security.md):

* durations (:func:`seconds`): :data:`MIN_SECONDS` (1 ms) to :data:`MAX_SECONDS`
  (30 days), 0 where a field allows it; every Redis key's TTL then fits ``PEXPIRE``;
* counts (:func:`count`): 1 (or 0) to :data:`MAX_COUNT`; retries up to
  :data:`MAX_RETRIES`; sizes (:func:`size`) 1 byte to :data:`MAX_BYTES`;
* rates (:func:`rate`): above 0, at most :data:`MAX_RATE` per period, and at least one
  call per :data:`MAX_SECONDS` (a slower "rate" is no limit one could wait for);
* fractions (:func:`fraction`): 0 to 1;
* options: :func:`choice`, :func:`flag`, :func:`status_codes`.

A field with a narrower rule passes its own ``low``/``high``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Iterable, Mapping
from typing import TypeVar

from ._errors import ConfigError

__all__ = [
    "MAX_BYTES",
    "MAX_COUNT",
    "MAX_RATE",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "MIN_SECONDS",
    "choice",
    "count",
    "flag",
    "fraction",
    "integer",
    "number",
    "rate",
    "seconds",
    "size",
    "status_codes",
]

MIN_SECONDS = 0.001
"""The shortest duration lamina accepts (1 ms); 0 only where a field says so."""
MAX_SECONDS = 30 * 24 * 3600.0
"""The longest duration lamina accepts: 30 days (2,592,000 s)."""
MAX_COUNT = 1_000_000
"""The largest count (burst, threshold, concurrency, entries) lamina accepts."""
MAX_RETRIES = 100
"""The most retries (extra attempts) of one call."""
MAX_RATE = 1_000_000_000
"""The most calls per period a rate limit may allow."""
MAX_BYTES = 1 << 40
"""The largest byte size lamina accepts (1 TiB)."""

_SECONDS_NAMES: Mapping[float, str] = {
    MIN_SECONDS: "1 ms",
    3600: "1 hour",
    86400: "1 day",
    MAX_SECONDS: "30 days",
}
_BYTES_NAMES: Mapping[float, str] = {1 << 20: "1 MiB", 512 << 20: "512 MiB", MAX_BYTES: "1 TiB"}

T = TypeVar("T")


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
    (or exactly 0 with ``allow_zero``), finite and not a denormal."""
    return _real(value, field, low, high, allow_zero, what, endpoint, {})


def seconds(
    value: object,
    field: str,
    *,
    allow_zero: bool = False,
    low: float = MIN_SECONDS,
    high: float = MAX_SECONDS,
    endpoint: str | None = None,
) -> float:
    """A duration in seconds: 1 ms to 30 days (or 0 with ``allow_zero``)."""
    what = "a duration in seconds"
    return _real(value, field, low, high, allow_zero, what, endpoint, _SECONDS_NAMES)


def rate(
    value: object,
    field: str,
    *,
    period: float,
    unit: str | None = None,
    endpoint: str | None = None,
) -> float:
    """Calls per ``period`` seconds (``unit`` words it, e.g. ``"per minute"``): above 0, at
    most :data:`MAX_RATE`, and at least one call per :data:`MAX_SECONDS`."""
    what = f"a number of calls {unit or f'per {_text(period, {})} s'}"
    return number(
        value, field, low=period / MAX_SECONDS, high=MAX_RATE, what=what, endpoint=endpoint
    )


def fraction(value: object, field: str, *, high: float = 1.0, endpoint: str | None = None) -> float:
    """A share: 0 to ``high`` (1 unless said otherwise)."""
    return number(value, field, low=0.0, high=high, what="a fraction", endpoint=endpoint)


def integer(
    value: object,
    field: str,
    *,
    low: int,
    high: int,
    what: str = "an integer",
    endpoint: str | None = None,
) -> int:
    """An int (not a bool, not a float) in ``[low, high]``."""
    return _int(value, field, low, high, what, endpoint, {})


def count(
    value: object, field: str, *, low: int = 1, high: int = MAX_COUNT, endpoint: str | None = None
) -> int:
    """A count: an int from 1 (or ``low``) to :data:`MAX_COUNT` (or ``high``)."""
    return integer(value, field, low=low, high=high, endpoint=endpoint)


def size(
    value: object, field: str, *, low: int = 1, high: int = MAX_BYTES, endpoint: str | None = None
) -> int:
    """A size in bytes: 1 to :data:`MAX_BYTES` (or ``low``/``high``)."""
    return _int(value, field, low, high, "a size in bytes", endpoint, _BYTES_NAMES)


def choice(value: object, field: str, options: Collection[T], *, endpoint: str | None = None) -> T:
    """One of ``options`` (compared with ``==``; a bool never matches)."""
    if not isinstance(value, bool):
        for option in options:
            if value == option:
                return option
    expected = ", ".join(repr(option) for option in options)
    raise _reject(f"must be one of {expected}", value, field, endpoint)


def flag(value: object, field: str, *, endpoint: str | None = None) -> bool:
    """``True`` or ``False`` (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise _reject("must be True or False", value, field, endpoint)
    return value


def status_codes(value: object, field: str, *, endpoint: str | None = None) -> tuple[int, ...]:
    """A collection (not a string) of HTTP status codes, each an int from 100 to 599;
    returned as a tuple in the given order."""
    expected = "a collection of HTTP status codes between 100 and 599"
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise _reject(f"must be {expected}", value, field, endpoint)
    codes = tuple(value)
    for code in codes:
        _int(code, field, 100, 599, expected, endpoint, {}, bounds=False)
    return codes


def _int(
    value: object,
    field: str,
    low: int,
    high: int,
    what: str,
    endpoint: str | None,
    names: Mapping[float, str],
    *,
    bounds: bool = True,
) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        rule = f"{what} between {_text(low, names)} and {_text(high, names)}" if bounds else what
        raise _reject(f"must be {rule}", value, field, endpoint)
    return value


def _real(
    value: object,
    field: str,
    low: float,
    high: float,
    allow_zero: bool,
    what: str,
    endpoint: str | None,
    names: Mapping[float, str],
) -> float:
    zero = "0 or " if allow_zero and low > 0 else ""
    expected = f"{zero}{what} between {_text(low, names)} and {_text(high, names)}"
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


def _reject(message: str, value: object, field: str, endpoint: str | None) -> ConfigError:
    return ConfigError(f"{message}, got {value!r}", field=field, endpoint=endpoint)


def _text(bound: float, names: Mapping[float, str]) -> str:
    """A bound as people read it: ``0.001 (1 ms)``, ``2592000 (30 days)``, ``2.31e-05``."""
    text = str(int(bound)) if float(bound).is_integer() else f"{bound:.3g}"
    name = names.get(bound)
    return f"{text} ({name})" if name else text
