"""Answer a failed call with a fallback value instead of the error (Polly's fallback)."""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Collection, Iterable
from typing import Any

from opentelemetry import trace

from .. import _errors
from .. import _validate as check
from .._core import Request, Response, Service
from .._errors import ConfigError, LaminaError
from .._events import emit

__all__ = ["FALLBACK_EVENT", "FallbackLayer", "FallbackResponse", "FallbackService"]

#: The event the layer emits when it answers with the fallback (``error``, ``status``).
FALLBACK_EVENT = "fallback.used"

#: ``errors`` when neither ``errors`` nor ``statuses`` is given: any error lamina raises.
DEFAULT_ON: tuple[type[BaseException], ...] = (LaminaError,)


class FallbackResponse(Response):
    """The response a :class:`FallbackLayer` answers with: ``value`` is the fallback,
    ``error`` the failure it replaced (the run report keeps it)."""

    __slots__ = ("error",)

    error: BaseException

    @classmethod
    def of(cls, response: Response, error: BaseException) -> FallbackResponse:
        """``response`` (a function's own answer) marked as a fallback for ``error``."""
        new = object.__new__(cls)
        for name in Response.__slots__:
            setattr(new, name, getattr(response, name))
        new.error = error
        return new


class FallbackLayer:
    """On the failures chosen by ``errors`` and ``statuses``, answer with ``fallback``.

    ``fallback`` is a value (the call's ``response.value``) or a function, sync or
    async, called with the error, or with the error and the request when it takes two
    arguments (``request.endpoint`` names the endpoint). What the function returns is
    the value; a :class:`lamina.Response` it returns is the answer as it is. An error
    it raises is the call's error (chained to the original one).

    ``errors`` lists error classes (or the names of lamina's errors, e.g.
    ``"CircuitOpenError"``); ``statuses`` lists HTTP statuses, matched on a
    :class:`lamina.HTTPStatusError` or, below the parse layer, on a response. With
    neither, any :class:`lamina.LaminaError` falls back; with ``statuses`` alone, only
    those statuses do. Cancellation never does, nor a :class:`lamina.ConfigError` unless
    ``errors`` names it. A mutable value is deep-copied for each call.

    Place it outside the retry layer and the breaker (and the cache: a fallback is
    never cached), so it sees only the final failure: ``CallTracing → Metrics →
    Fallback → Cache → Parse → Retry → CircuitBreaker → ...``. It emits
    ``fallback.used`` (``error``, ``status``) and marks the current span
    ``lamina.fallback``. The answer is a :class:`FallbackResponse` with status 200.
    """

    __slots__ = ("copies", "errors", "fallback", "is_function", "pass_request", "statuses")

    def __init__(
        self,
        fallback: Any = None,
        *,
        errors: Iterable[type[BaseException] | str] | type[BaseException] | str | None = None,
        statuses: Collection[int] | None = None,
    ) -> None:
        self.fallback = fallback
        self.is_function = callable(fallback) and not isinstance(fallback, type)
        self.pass_request = self.is_function and _takes_two(fallback)
        self.copies = not self.is_function and _copyable(fallback)
        """Whether each call gets its own copy of the value (a mutable, copyable one)."""
        self.statuses: frozenset[int] = frozenset(
            () if statuses is None else check.status_codes(statuses, "statuses")
        )
        if statuses is not None and not self.statuses:
            raise ConfigError(
                "names no status (leave it out for any lamina error)", field="statuses"
            )
        if errors is None:
            self.errors: tuple[type[BaseException], ...] = DEFAULT_ON if statuses is None else ()
        else:
            self.errors = _error_classes(errors)

    def handles(self, outcome: BaseException | Response) -> bool:
        """Whether ``outcome`` (an error, or a response) falls back."""
        if isinstance(outcome, Response):
            return outcome.status_code in self.statuses
        if not isinstance(outcome, Exception):  # cancellation, KeyboardInterrupt
            return False
        if isinstance(outcome, ConfigError) and not any(
            issubclass(cls, ConfigError) for cls in self.errors
        ):
            return False  # a misconfiguration is never hidden unless asked for by name
        if isinstance(outcome, _errors.HTTPStatusError) and outcome.status_code in self.statuses:
            return True
        return isinstance(outcome, self.errors)

    def wrap(self, inner: Service) -> Service:
        return FallbackService(inner, self)

    def __repr__(self) -> str:
        what = "function" if self.is_function else f"<{type(self.fallback).__name__}>"
        errors = ", ".join(cls.__name__ for cls in self.errors)
        statuses = f", statuses={sorted(self.statuses)}" if self.statuses else ""
        return f"FallbackLayer({what}, errors=({errors}){statuses})"


def _body(value: object) -> tuple[bytes, dict[str, str] | None]:
    """The value as a body, so that a parse layer above reads the same value back: JSON
    (text for a string, empty for None); empty for a value that is not JSON data."""
    if value is None:
        return b"", None
    if isinstance(value, str):
        return value.encode(), {"Content-Type": "text/plain; charset=utf-8"}
    try:
        return json.dumps(value, allow_nan=False).encode(), {"Content-Type": "application/json"}
    except (TypeError, ValueError):
        return b"", None


_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, frozenset)


def _copyable(value: object) -> bool:
    """Whether ``value`` is mutable (so calls must not share it) and can be deep-copied."""
    if isinstance(value, (*_IMMUTABLE, Response, type)):
        return False
    try:
        copy.deepcopy(value)
    except Exception:
        return False  # shared as it is (the docs say so)
    return True


def _takes_two(function: Callable[..., Any]) -> bool:
    """Whether ``function`` takes the request too (a second positional argument)."""
    wrapped = getattr(function, "func", None)
    if hasattr(function, "reference") and callable(wrapped):
        function = wrapped  # a flow's import: what it calls, not its (*args) wrapper
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = 0
    for param in params:
        if param.kind is param.VAR_POSITIONAL:
            return True
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def _error_classes(
    errors: Iterable[type[BaseException] | str] | type[BaseException] | str,
) -> tuple[type[BaseException], ...]:
    items: Iterable[Any] = (errors,) if isinstance(errors, str | type) else errors
    if not isinstance(items, Iterable):
        raise ConfigError(
            f"must be error classes or lamina error names, got {errors!r}", field="errors"
        )
    classes: list[type[BaseException]] = []
    for item in items:
        if isinstance(item, str):
            found = getattr(_errors, item, None) if item in _errors.__all__ else None
            if found is None:
                from difflib import get_close_matches

                close = get_close_matches(item, _errors.__all__, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{item!r} is not one of lamina's errors{hint} "
                    "(a class of your own goes in from Python or a flow's {import: ...})",
                    field="errors",
                )
            item = found
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise ConfigError(
                f"must be exception classes or names of lamina errors, got {item!r}", field="errors"
            )
        classes.append(item)
    if not classes:
        raise ConfigError(
            "names no error class (leave it out for any lamina error)", field="errors"
        )
    return tuple(classes)


class FallbackService:
    """Service made by :class:`FallbackLayer`."""

    __slots__ = ("config", "inner")

    def __init__(self, inner: Service, config: FallbackLayer) -> None:
        self.inner = inner
        self.config = config

    async def __call__(self, request: Request) -> Response:
        config = self.config
        try:
            response = await self.inner(request)
        except Exception as exc:
            if not config.handles(exc):
                raise
            return await self._fall_back(request, exc)
        if config.statuses and response.status_code in config.statuses:
            # below the parse layer: the status as the error the parse layer would raise
            return await self._fall_back(request, _errors.HTTPStatusError.from_response(response))
        return response

    async def _fall_back(self, request: Request, error: Exception) -> Response:
        config = self.config
        value = config.fallback
        if config.copies:
            value = copy.deepcopy(value)
        elif config.is_function:
            try:
                value = value(error, request) if config.pass_request else value(error)
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:
                if exc.__context__ is None and exc is not error:
                    exc.__context__ = error  # also when no except block was running
                raise
        # reported once there is an answer: a function that failed is no fallback
        status = error.status_code if isinstance(error, _errors.HTTPStatusError) else None
        emit(request, FALLBACK_EVENT, error=type(error).__name__, status=status)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("lamina.fallback", True)
        if isinstance(value, Response):
            return FallbackResponse.of(value, error)
        attempts = getattr(error, "attempts", None) or request.attempt
        content, headers = _body(value)
        answer = FallbackResponse(
            200, headers=headers, content=content, request=request, value=value, attempts=attempts
        )
        answer.error = error
        return answer

    def __repr__(self) -> str:
        return f"<FallbackService {self.config!r} -> {self.inner!r}>"
