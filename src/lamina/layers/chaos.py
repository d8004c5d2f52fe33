"""Fault injection for testing a stack's resilience (Polly's chaos strategies).

Off unless asked for: a :class:`ChaosLayer` in a stack or a flow's ``layers:``, or
``LAMINA_CHAOS`` in the environment (see :func:`chaos_from_env`). Loud when on: a
WARNING log once per stack, ``lamina.chaos`` on the attempt's span, a
``chaos.injected`` event per injection and a CHAOS mark in the run report.
"""

from __future__ import annotations

import json
import logging
import os
import random as _random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace

from .. import _validate as check
from .._clock import Clock, default_clock
from .._core import Layer, Request, Response, Service
from .._errors import ConfigError, ConnectError, LaminaError, TimeoutError, TransportError
from .._events import emit

__all__ = [
    "CHAOS_EVENT",
    "CHAOS_NOTE_KEY",
    "ENV_VAR",
    "FAULTS",
    "ChaosLayer",
    "ChaosService",
    "chaos_from_env",
    "chaos_switched_off",
    "parse_chaos",
    "with_env_chaos",
]

logger = logging.getLogger("lamina.chaos")

#: The environment variable that switches chaos on for every orchestrator stack
#: (``fault_rate=0.1,seed=7``) or off for every chaos layer (``off``).
ENV_VAR = "LAMINA_CHAOS"
#: The event emitted per injection (``kind``: latency, fault or status; and its detail).
CHAOS_EVENT = "chaos.injected"
#: ``request.extensions[CHAOS_NOTE_KEY]``: ``note(settings, injected_or_None)``, set by
#: the orchestrator so that its run report shows chaos.
CHAOS_NOTE_KEY = "lamina.chaos_note"
#: The header marking a response the layer made up.
MARK_HEADER = "X-Lamina-Chaos"

#: Fault names -> what each injects (every one a lamina error that retries and breakers
#: judge like the real thing).
FAULTS: Mapping[str, str] = {
    "connect": "ConnectError: the connection failed, nothing was sent",
    "timeout": "TimeoutError: the request was sent and no answer came",
    "reset": "TransportError: the connection broke after the request was sent",
}
OFF_VALUES = frozenset({"0", "off", "false", "no"})
_MAX_STREAMS = 10_000  # seeded random streams kept per layer (one per endpoint)


class ChaosLayer:
    """Inject latency, faults and made-up statuses into a share of calls.

    Per call, in this order: with probability ``latency_rate`` wait ``latency``
    seconds (a number, or ``(low, high)`` for a uniform draw); with probability
    ``fault_rate`` raise ``fault`` (``"connect"``, ``"timeout"``, ``"reset"``
    (:data:`FAULTS`) or an exception class); otherwise, with probability
    ``status_rate``, answer ``status`` with ``body`` (text, bytes or JSON data) and
    ``headers`` without calling the upstream. Else the call goes through.

    ``seed`` makes it reproducible: each endpoint draws from its own stream seeded
    with ``seed`` and its name, so the same calls get the same injections whatever
    the other endpoints do. ``enabled=False`` (or ``LAMINA_CHAOS=off`` in the
    environment when the stack is built) makes :meth:`wrap` a no-op.

    Place it innermost, just above the transport, so the timeout, retry and breaker
    layers see its faults as they would see the upstream's.
    """

    __slots__ = (
        "_random",
        "_streams",
        "body",
        "clock",
        "enabled",
        "fault",
        "fault_rate",
        "headers",
        "latency",
        "latency_rate",
        "origin",
        "seed",
        "status",
        "status_rate",
    )

    def __init__(
        self,
        *,
        fault_rate: float = 0.0,
        fault: str | type[Exception] = "connect",
        status: int | None = None,
        status_rate: float | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        latency: float | Sequence[float] | None = None,
        latency_rate: float | None = None,
        seed: int | str | None = None,
        enabled: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.fault_rate = check.fraction(fault_rate, "fault_rate")
        self.fault = _fault(fault)
        self.status, self.status_rate = _paired(status, status_rate, "status", _status)
        self.latency, self.latency_rate = _paired(latency, latency_rate, "latency", _latency)
        if not (self.fault_rate or self.status_rate or self.latency_rate):
            raise ConfigError(
                "injects nothing: give fault_rate, status with status_rate, or latency with "
                "latency_rate (above 0)",
                field="fault_rate",
            )
        self.body = _body(body, self.status)
        if headers is not None and not (
            isinstance(headers, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise ConfigError("must be a mapping of header names to strings", field="headers")
        self.headers = dict(headers or {})
        if seed is not None and type(seed) not in (int, str):  # not a bool, not a float
            raise ConfigError(f"must be an int or a string, got {seed!r}", field="seed")
        self.seed = seed
        self.enabled = check.flag(enabled, "enabled")
        self.clock = clock or default_clock
        self.origin = "stack"  # or the environment variable it came from
        self._random = _random.Random(seed) if seed is None else None  # unseeded: one stream
        self._streams: dict[str, _random.Random] = {}

    @property
    def settings(self) -> str:
        """The layer's settings in one line (what logs, spans and reports show)."""
        parts = []
        if self.latency_rate:
            low, high = self.latency
            shown = f"{low:g}" if low == high else f"{low:g}..{high:g}"
            parts.append(f"latency={shown}s@{self.latency_rate:g}")
        if self.fault_rate:
            parts.append(f"fault={_fault_name(self.fault)}@{self.fault_rate:g}")
        if self.status_rate:
            parts.append(f"status={self.status}@{self.status_rate:g}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        if self.origin != "stack":
            parts.append(f"from {self.origin}")
        return " ".join(parts)

    def random_for(self, endpoint: str | None) -> _random.Random:
        """The random stream of ``endpoint``'s calls."""
        if self._random is not None:
            return self._random
        key = endpoint or ""
        stream = self._streams.get(key)
        if stream is None:
            if len(self._streams) >= _MAX_STREAMS:
                self._streams.clear()
            stream = self._streams[key] = _random.Random(f"{self.seed}:{key}")
        return stream

    def make_fault(self, request: Request | None) -> Exception:
        """The exception a fault raises for ``request``."""
        fault = self.fault
        message = f"chaos: injected {_fault_name(fault)} fault ({self.settings})"
        if fault == "connect":
            return ConnectError(message, request=request)
        if fault == "timeout":
            return TimeoutError(message, request=request, request_sent=True)
        if fault == "reset":
            return TransportError(message, request=request)
        assert isinstance(fault, type)
        if issubclass(fault, LaminaError):
            try:
                return fault(message, request=request)
            except TypeError:
                pass  # one of your own that takes only a message (checked when built)
        return fault(message)

    def wrap(self, inner: Service) -> Service:
        if not self.enabled or chaos_switched_off():
            return inner
        return ChaosService(inner, self)

    def __repr__(self) -> str:
        state = "" if self.enabled else ", enabled=False"
        return f"ChaosLayer({self.settings}{state})"


def _fault(fault: object) -> str | type[Exception]:
    if isinstance(fault, str):
        if fault not in FAULTS:
            raise ConfigError(
                f"must be one of {', '.join(FAULTS)} or an exception class, got {fault!r}",
                field="fault",
            )
        return fault
    if isinstance(fault, type) and issubclass(fault, Exception):
        try:  # made per injected fault: it must be buildable from a message
            fault(f"chaos: injected {fault.__name__}")
        except Exception as exc:
            raise ConfigError(
                f"{fault.__name__} cannot be built from a message: {type(exc).__name__}: {exc}",
                field="fault",
            ) from None
        return fault
    raise ConfigError(
        f"must be one of {', '.join(FAULTS)} or an exception class, got {fault!r}", field="fault"
    )


def _fault_name(fault: str | type[Exception]) -> str:
    return fault if isinstance(fault, str) else fault.__name__


def _paired(value: Any, rate: Any, name: str, parse: Any) -> tuple[Any, float]:
    """``(value, rate)`` given together (or neither)."""
    if value is None and rate is None:
        return None, 0.0
    if value is None:
        raise ConfigError(f"{name}_rate needs {name}", field=name)
    if rate is None:
        raise ConfigError(
            f"needs {name}_rate: the share of calls (0 to 1) it applies to", field=f"{name}_rate"
        )
    return parse(value), check.fraction(rate, f"{name}_rate")


def _status(status: Any) -> int:
    return check.integer(status, "status", low=100, high=599, what="an HTTP status")


def _latency(latency: Any) -> tuple[float, float]:
    if isinstance(latency, Sequence) and not isinstance(latency, str | bytes):
        if len(latency) != 2:
            raise ConfigError(
                f"must be seconds or [low, high] seconds, got {latency!r}", field="latency"
            )
        low = check.seconds(latency[0], "latency", allow_zero=True)
        high = check.seconds(latency[1], "latency", allow_zero=True)
        if low > high:
            raise ConfigError(f"low {low:g} is above high {high:g}", field="latency")
        return low, high
    seconds = check.seconds(latency, "latency")
    return seconds, seconds


def _body(body: Any, status: int | None) -> tuple[bytes, str]:
    """The made-up response's body and Content-Type."""
    if body is None:
        body = {"error": f"chaos: injected status {status}"}
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    try:
        return json.dumps(body, allow_nan=False).encode(), "application/json"
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"must be text, bytes or JSON data: {exc}", field="body") from None


class ChaosService:
    """Service made by :class:`ChaosLayer`."""

    __slots__ = ("config", "inner", "settings", "warned")

    def __init__(self, inner: Service, config: ChaosLayer) -> None:
        self.inner = inner
        self.config = config
        self.settings = config.settings  # the layer is configured by now: say it once
        self.warned = False

    async def __call__(self, request: Request) -> Response:
        config = self.config
        if not self.warned:
            self.warned = True
            logger.warning(
                "lamina chaos is ON for endpoint %r: %s; calls fail on purpose",
                request.endpoint,
                self.settings,
            )
        settings = self.settings
        note = request.extensions.get(CHAOS_NOTE_KEY)
        if note is not None:
            note(settings, None)
        span = trace.get_current_span()
        recording = span.is_recording()
        if recording:
            span.set_attribute("lamina.chaos", settings)
        # Every draw of the call up front, as many per call whatever they decide: the
        # k-th call to enter meets the same injections however calls interleave (an
        # injected latency awaits before the call goes on).
        stream = config.random_for(request.endpoint)
        delay: float | None = None
        marked = ""
        if config.latency_rate:
            hit = stream.random() < config.latency_rate
            low, high = config.latency
            drawn = low if low == high else low + (high - low) * stream.random()
            delay = drawn if hit else None
        fault = bool(config.fault_rate) and stream.random() < config.fault_rate
        made_up = bool(config.status_rate) and stream.random() < config.status_rate
        if delay is not None:
            self._injected(request, note, span if recording else None, f"latency {delay:.3g}s")
            marked = f"latency {delay:.3g}s"  # what the span shows with a fault or status
            emit(request, CHAOS_EVENT, kind="latency", seconds=delay)
            await config.clock.sleep(delay)
        if fault:
            error = config.make_fault(request)
            self._injected(request, note, span if recording else None, type(error).__name__, marked)
            emit(request, CHAOS_EVENT, kind="fault", error=type(error).__name__)
            raise error
        if made_up:
            status = config.status
            self._injected(request, note, span if recording else None, f"status {status}", marked)
            emit(request, CHAOS_EVENT, kind="status", status=status)
            content, content_type = config.body
            headers = {"Content-Type": content_type, **config.headers, MARK_HEADER: "injected"}
            return Response(
                status, headers=headers, content=content, request=request, attempts=request.attempt
            )
        return await self.inner(request)

    def _injected(
        self, request: Request, note: Any, span: trace.Span | None, what: str, before: str = ""
    ) -> None:
        if note is not None:
            note(self.settings, f"attempt {request.attempt}: {what}")
        if span is not None:  # both marks when the attempt was delayed, then failed
            span.set_attribute("lamina.chaos.injected", f"{before}; {what}" if before else what)

    def __repr__(self) -> str:
        return f"<ChaosService {self.config!r} -> {self.inner!r}>"


# -- the environment switch ------------------------------------------------------------

_ENV_KEYS = (
    "fault_rate",
    "fault",
    "status",
    "status_rate",
    "body",
    "latency",
    "latency_rate",
    "seed",
)


def parse_chaos(text: str, *, source: str = ENV_VAR) -> dict[str, Any] | None:
    """The ChaosLayer options in ``text`` (``"fault_rate=0.1,latency=0.05..0.2,..."``),
    or None for off (empty, ``0``, ``off``, ``false``, ``no``). Strict: an unknown key,
    a repeated one or a value that is not a number where one is due is a ConfigError
    naming ``source.key``."""
    text = text.strip()
    if not text or text.lower() in OFF_VALUES:
        return None
    options: dict[str, Any] = {}
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(
                f"expected key=value items separated by commas (keys: {', '.join(_ENV_KEYS)}), "
                f"got {item!r}",
                field=source,
            )
        if key not in _ENV_KEYS:
            from difflib import get_close_matches

            close = get_close_matches(key, _ENV_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown key {key!r}{hint} (keys: {', '.join(_ENV_KEYS)})", field=f"{source}.{key}"
            )
        if key in options:
            raise ConfigError("given twice", field=f"{source}.{key}")
        options[key] = _env_value(key, raw, f"{source}.{key}")
    if not options:
        raise ConfigError("names nothing to inject", field=source)
    return options


def _env_value(key: str, raw: str, field: str) -> Any:
    if not raw and key != "body":  # an empty body is a body; any other empty value is junk
        raise ConfigError("has no value", field=field)
    if key in ("fault", "body"):
        return raw
    if key == "seed":
        if not _SEED.fullmatch(raw):
            raise ConfigError(
                f"must be an integer or a word of letters, digits, '_', '-', '.', got {raw!r}",
                field=field,
            )
        return int(raw) if raw.lstrip("-").isdigit() else raw
    if key == "latency" and ".." in raw:
        low, _, high = raw.partition("..")
        return [_env_number(low, field, float), _env_number(high, field, float)]
    if key == "status":
        return _env_number(raw, field, int)
    return _env_number(raw, field, float)


def _env_number(raw: str, field: str, kind: type[int] | type[float]) -> Any:
    try:
        if "_" in raw:  # Python's digit separator: not a number anyone writes in a variable
            raise ValueError(raw)
        return kind(raw.strip())
    except ValueError:
        what = "an integer" if kind is int else "a number (latency: seconds or low..high)"
        raise ConfigError(f"must be {what}, got {raw!r}", field=field) from None


_SEED = re.compile(r"-?[A-Za-z0-9_.-]+")


def chaos_switched_off(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``LAMINA_CHAOS`` says ``off`` (or ``0``, ``false``, ``no``): every chaos
    layer wraps nothing, whatever the stack or flow says."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return value.strip().lower() in OFF_VALUES


def chaos_from_env(
    environ: Mapping[str, str] | None = None, *, clock: Clock | None = None
) -> ChaosLayer | None:
    """The ChaosLayer ``LAMINA_CHAOS`` describes, or None when it is unset or off.

    A bad value is a ConfigError naming ``LAMINA_CHAOS`` (and the key)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR)
    if value is None:
        return None
    options = parse_chaos(value)
    if options is None:
        return None
    try:
        layer = ChaosLayer(**options, clock=clock)
    except ConfigError as exc:
        raise ConfigError(
            exc.message.partition(": ")[2] if exc.field else exc.message,
            field=f"{ENV_VAR}.{exc.field}" if exc.field else ENV_VAR,
        ) from None
    layer.origin = ENV_VAR
    return layer


def with_env_chaos(
    stacks: Mapping[str, list[Layer]],
    *,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, list[Layer]]:
    """``stacks`` (layers by endpoint, outermost first) with the chaos layer of
    ``LAMINA_CHAOS``, one for all, innermost in each that has no chaos layer yet."""
    layer = chaos_from_env(environ, clock=clock)
    if layer is None:
        return dict(stacks)
    return {
        name: layers if any(isinstance(x, ChaosLayer) for x in layers) else [*layers, layer]
        for name, layers in stacks.items()
    }
