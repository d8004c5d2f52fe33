"""Fill ``{name}`` placeholders in endpoint URLs without letting a value escape its segment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .._errors import ConfigError
from .config import PLACEHOLDER

__all__ = ["fill_url"]


def encode_segment(value: Any) -> str:
    """Percent-encode ``value`` as exactly one path segment or query value.

    ``/``, ``?``, ``#``, ``@``, ``%`` and every other reserved character are encoded,
    and dots are too, so ``.`` and ``..`` cannot walk the path.
    """
    text = value if isinstance(value, str) else str(value)
    return quote(text, safe="").replace(".", "%2E")


def fill_url(template: str, context: Mapping[str, Any], *, endpoint: str) -> str:
    """``template`` with every placeholder replaced by its encoded value from ``context``."""
    if "{" not in template:
        return template

    def replace(match: Any) -> str:
        key = match.group(1)
        if key not in context or context[key] is None:
            raise ConfigError(
                f"placeholder {{{key}}} has no value in the input data or earlier results",
                field="url",
                endpoint=endpoint,
            )
        return encode_segment(context[key])

    return PLACEHOLDER.sub(replace, template)
