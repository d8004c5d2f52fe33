"""Every mistake in a flow at once: :class:`FlowErrors` and the collector that builds it.

Validation goes on past the first error: a bad field is reported and left out, a broken
endpoint is replaced by a stand-in with its name (so what depends on it is not called
unknown), and a field whose ``${VAR}`` could not be filled is reported once, not again
for the value it would have held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .._errors import ConfigError

__all__ = ["FlowErrors", "Problems", "errors_of"]

T = TypeVar("T")
#: Most errors one flow reports (a generated flow could hold thousands).
MAX_ERRORS = 50


class FlowErrors(ConfigError):
    """More than one thing is wrong with a flow: :attr:`errors` holds each, in file order,
    every one a :class:`lamina.ConfigError` with its ``field`` (and, from a YAML file,
    its line). ``field`` and the first line of the message are the first error's.
    At most :data:`MAX_ERRORS` are kept; :attr:`omitted` counts the ones left out."""

    def __init__(self, errors: Iterable[ConfigError], *, omitted: int = 0) -> None:
        self.errors = list(errors)
        self.omitted = omitted
        first = self.errors[0]
        head = _bare(first)
        rest = [str(e) for e in self.errors[1:]]
        more = [f"... and {omitted} more error(s) not shown"] if omitted else []
        super().__init__("\n".join([head, *rest, *more]), field=first.field)


def _bare(exc: ConfigError) -> str:
    """The message without its ``field: `` prefix."""
    prefix = f"{exc.field}: " if exc.field else ""
    return exc.message.removeprefix(prefix)


def errors_of(exc: ConfigError) -> list[ConfigError]:
    """The errors ``exc`` stands for: its :attr:`FlowErrors.errors`, or itself."""
    return list(exc.errors) if isinstance(exc, FlowErrors) else [exc]


def _under(field: str, root: str) -> bool:
    return field == root or field.startswith((f"{root}.", f"{root}["))


class Problems:
    """Collects the errors of one flow; :meth:`check` raises them."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.omitted = 0  # errors past MAX_ERRORS, counted only
        self.blocked: list[str] = []  # fields whose ${VAR} failed: their later errors are noise

    def add(self, exc: ConfigError) -> None:
        """Record ``exc`` (all of a :class:`FlowErrors`), unless its field already failed
        to substitute or the same error is known."""
        for error in errors_of(exc):
            field = error.field or ""
            if field and any(_under(field, root) for root in self.blocked):
                continue
            if any(e.field == error.field and e.message == error.message for e in self.errors):
                continue
            if len(self.errors) < MAX_ERRORS:
                self.errors.append(error)
            else:
                self.omitted += 1

    def block(self, field: str) -> None:
        """Report nothing more under ``field`` (its value is not what the author meant)."""
        self.blocked.append(field)

    def attempt(self, build: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``build(*args, **kwargs)``, or None with its ConfigError recorded."""
        try:
            return build(*args, **kwargs)
        except ConfigError as exc:
            self.add(exc)
            return None

    def check(self) -> None:
        """Raise the one error, or :class:`FlowErrors` for several."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise FlowErrors(self.errors, omitted=self.omitted)

    def __bool__(self) -> bool:
        return bool(self.errors)


def top_field(field: str | None) -> str | None:
    """``"headers.X-Key"`` -> ``"headers"``, ``"endpoints[2].url"`` -> ``"endpoints"``."""
    if not field:
        return None
    return field.split(".", 1)[0].split("[", 1)[0]


def narrowing(
    build: Callable[..., T],
    kwargs: dict[str, Any],
    problems: Problems,
    *,
    relocate: Callable[[ConfigError], ConfigError],
    drop: Callable[[dict[str, Any], ConfigError], bool],
    tries: int = MAX_ERRORS,
) -> T | None:
    """``build(**kwargs)``; on a ConfigError record it (``relocate``d), let ``drop`` take
    the culprit out of ``kwargs`` and try again, until it builds or ``drop`` gives up."""
    for _ in range(tries):
        try:
            return build(**kwargs)
        except ConfigError as exc:
            problems.add(relocate(exc))
            if not drop(kwargs, exc):
                return None
    return None
