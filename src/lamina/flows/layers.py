"""A flow's ``layers:`` list: layer names with options, built into per-endpoint stacks.

Each entry is a name (``"retry"``), ``{name: ..., options: {...}}`` or the short
``{retry: {...}}``; the list is outermost first. ``defaults`` stands for the whole
default stack. A built-in name *without* options stands for the instance the default
stack would use for that endpoint (none when the endpoint's fields turn it off);
with options (even ``{}``) the layer is built from them. Options may use
``{import: "pkg.mod:obj"}`` for Python objects (only when the caller allows imports:
see :mod:`lamina.flows.imports`); ``clock`` and ``tracer_provider`` are supplied by the
orchestrator when the layer accepts them.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

from .._core import Layer
from .._errors import ConfigError
from ..orchestration.config import APIEndpoint, APIOrchestrationConfig
from ..orchestration.stack import SharedState, current_state, default_layers
from ..plugins import LayerFactory, get_layer
from .imports import Importer, PendingImport

__all__ = ["DEFAULTS", "FlowLayers", "LayerSpec", "parse_layers"]

DEFAULTS = "defaults"
#: Built-ins that the default stack may contain (opt-in layers such as ``concurrency`` never are).
IN_DEFAULT_STACK = frozenset(
    {
        "call_tracing",
        "metrics",
        "cache",
        "parse",
        "retry",
        "circuit_breaker",
        "rate_limit",
        "timeout",
        "tracing",
        "logging",
    }
)
INJECTED = ("clock", "tracer_provider")


@dataclass(frozen=True)
class LayerSpec:
    """One entry of a flow's ``layers:`` list. ``options`` None means "as the defaults"."""

    name: str
    options: dict[str, Any] | None = None
    raw_options: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def to_spec(self) -> str | dict[str, Any]:
        """The flow spelling of this entry."""
        if self.options is None:
            return self.name
        return {"name": self.name, "options": dict(self.raw_options or self.options)}


def parse_layers(data: Any, path: str = "layers", *, allow_imports: Any = False) -> list[LayerSpec]:
    """Validate a ``layers:`` list (names, options) and return its specs.

    ``{import: ...}`` option values are refused unless ``allow_imports`` permits them
    (see :func:`lamina.flows.load_flow`)."""
    if isinstance(data, str) or not isinstance(data, Sequence):
        raise ConfigError("must be a list of layer names or {name, options}", field=path)
    importer = Importer.of(allow_imports)
    specs = []
    for index, entry in enumerate(data):
        where = f"{path}[{index}]"
        name, options = _entry(entry, where)
        specs.append(_check(name, options, where, importer))
    return specs


def _entry(entry: Any, where: str) -> tuple[str, Any]:
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, Mapping):
        if "name" in entry:
            unknown = set(entry) - {"name", "options"}
            if unknown:
                key = sorted(unknown)[0]
                raise ConfigError(
                    f"unknown key {key!r}{_did_you_mean(key, ['name', 'options'])}",
                    field=f"{where}.{key}",
                )
            return entry["name"], entry.get("options", {})
        if len(entry) == 1:
            ((name, options),) = entry.items()
            return name, {} if options is None else options
    raise ConfigError(
        "must be a layer name, {name: ..., options: {...}} or {layer_name: {...}}", field=where
    )


def _check(name: Any, options: Any, where: str, importer: Importer) -> LayerSpec:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"must be a layer name, got {name!r}", field=f"{where}.name")
    if name == DEFAULTS:
        if options:
            raise ConfigError("'defaults' takes no options", field=f"{where}.options")
        return LayerSpec(DEFAULTS)
    try:
        plugin = get_layer(name)
    except ConfigError as exc:
        raise ConfigError(exc.message.partition(": ")[2], field=f"{where}.name") from None
    if options is None:
        if plugin.builtin and name in IN_DEFAULT_STACK:
            return LayerSpec(name)
        options = {}
    if not isinstance(options, Mapping):
        raise ConfigError("must be a mapping of option names", field=f"{where}.options")
    for key in options:
        if not isinstance(key, str):
            hint = " (YAML reads an unquoted on/off/yes/no key as a boolean: quote it)"
            raise ConfigError(
                f"option names must be strings, got {key!r}"
                + (hint if key is True or key is False else ""),
                field=f"{where}.options",
            )
    factory = _load(plugin.load, where)
    resolved = {k: _resolve(v, f"{where}.options.{k}", importer) for k, v in options.items()}
    _bind(factory, resolved, name, where)
    if not _pending(resolved):  # a PendingImport is no value to build with
        _build(factory, resolved, name, where)  # load-time validation of the values
    return LayerSpec(name, resolved, dict(options))


def _load(load: Any, where: str) -> LayerFactory:
    try:
        factory: LayerFactory = load()
    except ConfigError as exc:
        raise ConfigError(exc.message.partition(": ")[2], field=f"{where}.name") from exc
    return factory


def _resolve(value: Any, where: str, importer: Importer) -> Any:
    if isinstance(value, Mapping) and set(value) == {"import"}:
        return importer.load(value["import"], f"{where}.import")
    return value


def _pending(options: Mapping[str, Any]) -> list[str]:
    return [key for key, value in options.items() if isinstance(value, PendingImport)]


def _did_you_mean(key: str, choices: Sequence[str]) -> str:
    close = get_close_matches(key, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _bind(factory: LayerFactory, options: Mapping[str, Any], name: str, where: str) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    allowed = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for key in options:
        if key not in params and not takes_any:
            raise ConfigError(
                f"layer {name!r} has no option {key!r}{_did_you_mean(key, allowed)} "
                f"(options: {', '.join(allowed) or 'none'})",
                field=f"{where}.options.{key}",
            )
    try:
        signature.bind(**options)
    except TypeError as exc:
        raise ConfigError(f"layer {name!r}: {exc}", field=f"{where}.options") from None


def _build(factory: LayerFactory, options: Mapping[str, Any], name: str, where: str) -> Layer:
    try:
        layer = factory(**options)
    except ConfigError as exc:
        inner = f".{exc.field}" if exc.field else ""
        message = exc.message.partition(": ")[2] if exc.field else exc.message
        raise ConfigError(message, field=f"{where}.options{inner}") from exc
    except Exception as exc:
        raise ConfigError(
            f"layer {name!r} rejected its options: {type(exc).__name__}: {exc}",
            field=f"{where}.options",
        ) from exc
    if not isinstance(layer, Layer):
        raise ConfigError(
            f"layer {name!r} does not satisfy the Layer protocol: "
            f"it returned {type(layer).__name__}, which has no wrap()",
            field=f"{where}.name",
        )
    return layer


class FlowLayers:
    """``layers(endpoint, config)`` for :class:`lamina.APIOrchestrator`, from a flow's specs.

    Layers built from options are made once per orchestrator and shared by its
    endpoints (like the default breakers and limiters); ``clock`` and
    ``tracer_provider`` come from the orchestrator's shared state.
    """

    def __init__(self, specs: Sequence[LayerSpec]) -> None:
        self.specs = list(specs)
        self._built: weakref.WeakKeyDictionary[SharedState, dict[int, Layer]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Layer]:
        shared = current_state(config)
        built = self._built.setdefault(shared, {})
        defaults: list[Layer] | None = None
        layers: list[Layer] = []
        for index, spec in enumerate(self.specs):
            if spec.name == DEFAULTS or spec.options is None:
                if defaults is None:
                    defaults = default_layers(endpoint, config, shared)
                if spec.name == DEFAULTS:
                    layers.extend(defaults)
                else:
                    cls = get_layer(spec.name).load()
                    layers.extend(layer for layer in defaults if type(layer) is cls)
                continue
            if index not in built:
                built[index] = self._make(spec, shared, index)
            layers.append(built[index])
        return layers

    def _make(self, spec: LayerSpec, shared: SharedState, index: int) -> Layer:
        options = dict(spec.options or {})
        if _pending(options):
            raise ConfigError(
                f"layer {spec.name!r} cannot be built: the flow was loaded with "
                "resolve_imports=False",
                field=f"layers[{index}].options.{_pending(options)[0]}",
            )
        factory = get_layer(spec.name).load()
        params: Mapping[str, inspect.Parameter]
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = {}
        injected = {"clock": shared.clock, "tracer_provider": shared.tracer_provider}
        for key in INJECTED:
            if key in params and key not in options and injected[key] is not None:
                options[key] = injected[key]
        return _build(factory, options, spec.name, f"layers[{index}]")

    def __repr__(self) -> str:
        return f"FlowLayers({[s.name for s in self.specs]!r})"
