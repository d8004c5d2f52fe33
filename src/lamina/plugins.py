"""Layer plugins: layers found by name in the entry-point group ``lamina.layers``.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."lamina.layers"]
    request_id = "lamina_request_id:RequestIdLayer"

The target is a Layer class (or any callable returning a Layer) called with the
flow's options as keyword arguments. lamina's own layers are registered the same
way; :data:`BUILTIN_LAYERS` is the fallback table used when lamina's metadata does
not declare them (an editable install made before the entry points were added).

A plugin that fails to import, or whose result is not a Layer, raises a
:class:`lamina.ConfigError` naming the plugin and its package; the others keep working.
A plugin that declares a built-in's name (``retry``) never replaces it: it is listed by
:func:`clashing_plugins` (and ``lamina layers``) and warned about with a
:class:`LayerNameClash` warning, never dropped silently.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ._core import Layer
from ._errors import ConfigError

__all__ = [
    "BUILTIN_LAYERS",
    "GROUP",
    "LayerNameClash",
    "LayerPlugin",
    "available_layers",
    "clash_message",
    "clashing_plugins",
    "get_layer",
    "load_layer",
    "make_layer",
]

GROUP = "lamina.layers"

#: lamina's own layers, by entry-point name (outermost-first order of the default stack).
BUILTIN_LAYERS: dict[str, str] = {
    "call_tracing": "lamina.layers.call_tracing:CallTracingLayer",
    "metrics": "lamina.layers.metrics:MetricsLayer",
    "cache": "lamina.layers.cache:CacheLayer",
    "parse": "lamina.layers.parse:ParseLayer",
    "retry": "lamina.layers.retry:RetryLayer",
    "circuit_breaker": "lamina.layers.circuit_breaker:CircuitBreakerLayer",
    "rate_limit": "lamina.layers.rate_limit:RateLimitLayer",
    "timeout": "lamina.layers.timeout:TimeoutLayer",
    "tracing": "lamina.layers.tracing:TracingLayer",
    "logging": "lamina.layers.logging:LoggingLayer",
    "concurrency": "lamina.layers.concurrency:ConcurrencyLimitLayer",
    "fallback": "lamina.layers.fallback:FallbackLayer",
    "chaos": "lamina.layers.chaos:ChaosLayer",
    "client_credentials": "lamina.layers.client_credentials:ClientCredentialsLayer",
    "hedge": "lamina.layers.hedge:HedgeLayer",
    "adaptive_concurrency": "lamina.layers.adaptive_concurrency:AdaptiveConcurrencyLayer",
}

LayerFactory = Callable[..., Any]


class LayerNameClash(UserWarning):
    """An installed plugin declares the name of one of lamina's own layers."""


@dataclass(frozen=True)
class LayerPlugin:
    """One registered layer: ``name`` -> ``value`` (``module:attr``) from ``package``."""

    name: str
    value: str
    package: str
    builtin: bool
    entry_point: EntryPoint | None = None

    def load(self) -> LayerFactory:
        """Import the layer factory (ConfigError naming the plugin and package on failure)."""
        try:
            if self.entry_point is not None:
                target = self.entry_point.load()
            else:
                target = EntryPoint(self.name, self.value, GROUP).load()
        except Exception as exc:
            raise ConfigError(
                f"layer plugin {self.name!r} ({self.value}) from package {self.package} "
                f"failed to import: {type(exc).__name__}: {exc}",
                field=f"layers.{self.name}",
            ) from exc
        if not callable(target):
            raise self._not_a_layer(f"{type(target).__name__} is not callable")
        if inspect.isclass(target) and not callable(getattr(target, "wrap", None)):
            raise self._not_a_layer(f"class {target.__name__} has no wrap(inner) method")
        return target  # type: ignore[no-any-return]

    def options(self) -> list[str]:
        """The factory's options, e.g. ``["seconds: float", "clock: Clock | None = None"]``."""
        try:
            signature = inspect.signature(self.load())
        except (TypeError, ValueError):
            return []
        shown = []
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            text = param.name
            if param.annotation is not param.empty:
                annotation = param.annotation
                text += f": {annotation if isinstance(annotation, str) else annotation.__name__}"
            if param.default is not param.empty:
                text += f" = {param.default!r}"
            shown.append(text)
        return shown

    def _not_a_layer(self, why: str) -> ConfigError:
        return ConfigError(
            f"layer plugin {self.name!r} ({self.value}) from package {self.package} "
            f"does not satisfy the Layer protocol: {why}",
            field=f"layers.{self.name}",
        )


def _package(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown package"
    return f"{dist.name} {dist.version}"


def _is_lamina(ep: EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.name.lower() == "lamina"


def clashing_plugins() -> list[LayerPlugin]:
    """Installed plugin entries that declare a built-in layer's name (never used)."""
    return [
        LayerPlugin(ep.name, ep.value, _package(ep), False, ep)
        for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value))
        if ep.name in BUILTIN_LAYERS and not _is_lamina(ep)
    ]


def clash_message(plugin: LayerPlugin) -> str:
    """What is wrong with a plugin entry that takes a built-in's name."""
    return (
        f"layer plugin {plugin.name!r} ({plugin.value}) from package {plugin.package} "
        f"declares the name of lamina's built-in {plugin.name!r} layer and is ignored: "
        "rename its entry point"
    )


_warned: set[tuple[str, str]] = set()


def available_layers() -> dict[str, LayerPlugin]:
    """Every layer by name: lamina's built-ins first, then installed plugins (sorted).

    A plugin may not replace a built-in name: such an entry is ignored, with a
    :class:`LayerNameClash` warning (once per entry and process; see
    :func:`clashing_plugins`).
    """
    found: dict[str, LayerPlugin] = {
        name: LayerPlugin(name, value, "lamina (built-in)", True)
        for name, value in BUILTIN_LAYERS.items()
    }
    plugins: dict[str, LayerPlugin] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if ep.name in found:
            if not _is_lamina(ep):  # lamina's own registration is fine; a clash is not
                _warn_clash(LayerPlugin(ep.name, ep.value, _package(ep), False, ep))
            continue
        plugins.setdefault(ep.name, LayerPlugin(ep.name, ep.value, _package(ep), False, ep))
    return {**found, **plugins}


def _warn_clash(plugin: LayerPlugin) -> None:
    key = (plugin.name, plugin.value)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(clash_message(plugin), LayerNameClash, stacklevel=3)


def get_layer(name: str) -> LayerPlugin:
    """The registered layer ``name`` (ConfigError with a did-you-mean if unknown)."""
    layers = available_layers()
    if name in layers:
        return layers[name]
    from difflib import get_close_matches

    close = get_close_matches(name, list(layers), n=1, cutoff=0.7)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown layer {name!r}{hint} (known: {', '.join(layers)})", field="layers")


def load_layer(name: str) -> LayerFactory:
    """Import the factory (usually a Layer class) registered as ``name``."""
    return get_layer(name).load()


def make_layer(name: str, /, **options: Any) -> Layer:
    """Build the layer registered as ``name`` with ``options`` as keyword arguments."""
    plugin = get_layer(name)
    factory = plugin.load()
    try:
        layer = factory(**options)
    except ConfigError:
        raise
    except TypeError as exc:
        raise ConfigError(f"bad options for layer {name!r}: {exc}", field="layers") from exc
    if not isinstance(layer, Layer):
        raise plugin._not_a_layer(f"it returned {type(layer).__name__}, which has no wrap()")
    return layer
