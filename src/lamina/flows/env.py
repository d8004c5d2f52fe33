"""``${NAME}`` environment substitution in flow values.

``${NAME}`` is replaced by the variable's value, ``${NAME:-fallback}`` uses the
fallback when it is unset, and ``$${`` writes a literal ``${``. A missing variable
is a :class:`lamina.ConfigError` naming it and the place. Keys are never substituted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigError

__all__ = ["Substitutions", "render_path", "substitute"]

VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: Most values a flow may hold (YAML aliases can make a small file expand enormously).
MAX_VALUES = 100_000
BROKEN = re.compile(r"(?<!\$)\$\{(?![A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})")


@dataclass
class Substitutions:
    """What was substituted: ``templates`` maps a path to its original string,
    ``values`` holds every value that came from the environment (to scrub)."""

    templates: dict[tuple[str | int, ...], str] = field(default_factory=dict)
    results: dict[tuple[str | int, ...], str] = field(default_factory=dict)
    values: set[str] = field(default_factory=set)
    variables: dict[str, str] = field(default_factory=dict)
    """Each variable used, by name, with its value."""
    uses: dict[str, list[tuple[str | int, ...]]] = field(default_factory=dict)
    """Each variable used, by name, with the paths of the values that hold it."""
    visited: int = 0
    collect: bool = False
    """Record a missing variable or a malformed ``${`` in :attr:`errors` and go on
    (the value is left as written) instead of raising."""
    errors: list[ConfigError] = field(default_factory=list)


def render_path(path: tuple[str | int, ...]) -> str:
    """``("endpoints", 0, "timeout")`` -> ``"endpoints[0].timeout"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def substitute(
    data: Any,
    env: Mapping[str, str] | None = None,
    path: tuple[str | int, ...] = (),
    found: Substitutions | None = None,
) -> tuple[Any, Substitutions]:
    """A copy of ``data`` with ``${NAME}`` filled from ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    found = found if found is not None else Substitutions()
    found.visited += 1
    if found.visited > MAX_VALUES:
        raise ConfigError(
            f"the flow holds more than {MAX_VALUES} values (YAML aliases expanding?)",
            field=render_path(path) or None,
        )
    if isinstance(data, str):
        return _substitute_string(data, env, path, found), found
    if isinstance(data, Mapping):
        return {k: substitute(v, env, (*path, str(k)), found)[0] for k, v in data.items()}, found
    if isinstance(data, list | tuple):
        return [substitute(v, env, (*path, i), found)[0] for i, v in enumerate(data)], found
    return data, found


def _substitute_string(
    text: str, env: Mapping[str, str], path: tuple[str | int, ...], found: Substitutions
) -> str:
    if "$" not in text:
        return text
    if BROKEN.search(text):
        error = ConfigError(
            "malformed ${...}: write ${NAME} or ${NAME:-default} (and $${ for a literal)",
            field=render_path(path) or None,
        )
        if not found.collect:
            raise error
        found.errors.append(error)
        return text
    used = False
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        nonlocal used
        name = match.group(1)
        if name is None:
            return "${"
        used = True
        if name in env:
            value = env[name]
            found.values.add(value)
            found.variables[name] = value
            found.uses.setdefault(name, []).append(path)
            return value
        default = match.group(2)
        if default is not None:
            return default
        missing.append(name)
        return match.group(0)

    result = VARIABLE.sub(replace, text)
    if missing:
        names = list(dict.fromkeys(missing))
        which = (
            f"environment variable {names[0]} is not set (export it"
            if len(names) == 1
            else f"environment variables {', '.join(names)} are not set (export them"
        )
        error = ConfigError(
            f"{which}, or give a default: ${{{missing[0]}:-value}})",
            field=render_path(path) or None,
        )
        if not found.collect:
            raise error
        found.errors.append(error)
        return text
    if used or result != text:
        found.templates[path] = text
        found.results[path] = result
    return result
