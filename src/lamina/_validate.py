"""Small validators that raise ConfigError naming the field."""

from __future__ import annotations

import math

from ._errors import ConfigError

__all__ = ["positive_number"]


def positive_number(value: object, field: str, *, endpoint: str | None = None) -> float:
    """``value`` as a float if it is a finite number > 0, else a ConfigError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"must be a finite number > 0, got {value!r}", field=field, endpoint=endpoint
        )
    return float(value)
