"""Dict <-> :class:`APIOrchestrationConfig`, validated with errors that name the place."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any
from weakref import WeakKeyDictionary

from .._errors import ConfigError
from .._redact import scrub
from ..orchestration.config import TRANSPORT_NAMES, APIEndpoint, APIOrchestrationConfig
from .env import Substitutions, render_path, substitute
from .expressions import HOOK_FIELDS, hook_from_spec, hook_to_spec
from .imports import FlowImport, Importer
from .layers import FlowLayers, LayerSpec, parse_layers
from .limits import check_shape
from .problems import FlowErrors, Problems, errors_of, narrowing, top_field
from .secrets import hidden_values

__all__ = [
    "CONFIG_KEYS",
    "ENDPOINT_KEYS",
    "FlowInfo",
    "config_from_dict",
    "config_to_dict",
    "flow_info",
    "flow_layers",
]

ENDPOINT_FIELDS = {f.name: f for f in dataclasses.fields(APIEndpoint) if f.init}
CONFIG_FIELDS = {
    f.name: f
    for f in dataclasses.fields(APIOrchestrationConfig)
    if f.init and f.name not in ("endpoints", "name", "description", "layers")
}
META_KEYS = ("name", "description", "layers", "transport")
#: Keys a flow may hold at the top level and in each endpoint.
CONFIG_KEYS = ("endpoints", *META_KEYS, *CONFIG_FIELDS)
ENDPOINT_KEYS = tuple(ENDPOINT_FIELDS)


@dataclass
class FlowInfo:
    """What a flow says beyond the config's own fields."""

    name: str | None = None
    description: str | None = None
    layers: list[LayerSpec] | None = None
    transport: str | None = None
    """The transport by name (``transport: pyreqwest``), or None for the default."""
    substitutions: Substitutions = field(default_factory=Substitutions)
    source: str | None = None
    builder: FlowLayers | None = None
    imports: list[FlowImport] = field(default_factory=list)
    """Every import reference in the flow, with whether ``allow_imports`` permits it."""


_INFO: WeakKeyDictionary[APIOrchestrationConfig, FlowInfo] = WeakKeyDictionary()


def flow_info(config: APIOrchestrationConfig) -> FlowInfo:
    """The flow details of ``config`` (empty for a config built in Python)."""
    return _INFO.get(config) or FlowInfo()


def flow_layers(config: APIOrchestrationConfig) -> FlowLayers | None:
    """The ``layers=`` option for :class:`lamina.APIOrchestrator` that a flow's
    ``layers:`` list asks for, or None (the default stack)."""
    info = _INFO.get(config)
    if info is None or info.layers is None:
        return None
    if info.builder is None:
        info.builder = FlowLayers(info.layers)
    return info.builder


def _attach_layers(config: APIOrchestrationConfig, info: FlowInfo) -> None:
    """Expose the flow's stack as ``config.layers`` (what the orchestrator and CLI read)."""
    builder = flow_layers(config)
    if builder is not None:
        # A plain attribute until APIOrchestrationConfig grows a ``layers`` field.
        setattr(config, "layers", builder)  # noqa: B010


def _unknown(
    keys: Mapping[str, Any], allowed: tuple[str, ...], where: str, problems: Problems
) -> None:
    for key in keys:
        if key not in allowed:
            close = get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            path = f"{where}.{key}" if where else str(key)
            problems.add(ConfigError(f"unknown key {key!r}{hint}", field=path))


def _relocate(exc: ConfigError, prefix: str) -> ConfigError:
    """``exc`` with its field moved under ``prefix`` (``timeout`` -> ``endpoints[0].timeout``)."""
    message = exc.message.partition(": ")[2] if exc.field else exc.message
    where = f"{prefix}.{exc.field}" if exc.field else prefix
    return ConfigError(message, field=where)


def config_from_dict(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    source: str | None = None,
    allow_imports: Any = False,
    resolve_imports: bool = True,
) -> APIOrchestrationConfig:
    """Build a validated config from a flow mapping (``${VAR}`` filled from ``env``,
    default ``os.environ``). Errors are :class:`lamina.ConfigError` whose ``field`` is
    the path, e.g. ``endpoints[2].depends_on``; values from the environment never
    appear in their messages. Every mistake is reported at once: with more than one,
    the error is a :class:`lamina.flows.FlowErrors` whose ``errors`` lists each.

    Import references are refused unless ``allow_imports`` permits them (``True``, or a
    list of module prefixes); with ``resolve_imports=False`` nothing is imported and
    :attr:`FlowInfo.imports` lists them (see :func:`lamina.flows.load_flow`)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a flow must be a mapping, got {type(data).__name__}", field=None)
    check_shape(data, source)
    importer = Importer.of(allow_imports, resolve=resolve_imports)
    found = Substitutions(collect=True)
    problems = Problems()
    try:
        resolved, found = substitute(data, env, (), found)
        for error in found.errors:
            problems.add(error)
            problems.block(error.field or "")
        config = _build(resolved, found, source, importer, problems)
        problems.check()
        assert config is not None  # built whenever no problem was found
        return config
    except ConfigError as exc:
        if not found.values:
            raise
        hidden = hidden_values(found)
        pieces = _pieces_by_field(found, hidden)
        scrubbed = [_scrubbed(e, hidden | pieces.get(e.field or "", set())) for e in errors_of(exc)]
        if len(scrubbed) == 1:
            raise scrubbed[0] from None
        raise FlowErrors(scrubbed, omitted=getattr(exc, "omitted", 0)) from None


_WORDS = re.compile(r"[A-Za-z0-9_.\-]{4,}")


def _pieces_by_field(found: Substitutions, hidden: set[str]) -> dict[str, set[str]]:
    """By field, the words of the hidden values it holds: an error about that field (a
    JMESPath parser naming the token it stopped at) may quote a piece of one."""
    out: dict[str, set[str]] = {}
    for name, value in found.variables.items():
        if value not in hidden:
            continue
        words = set(_WORDS.findall(value))
        for path in found.uses.get(name, []):
            out.setdefault(render_path(path), set()).update(words)
    return out


def _scrubbed(exc: ConfigError, values: set[str]) -> ConfigError:
    message = exc.message.partition(": ")[2] if exc.field else exc.message
    return ConfigError(scrub(message, values), field=exc.field)


def _build(
    data: dict[str, Any],
    found: Substitutions,
    source: str | None,
    importer: Importer,
    problems: Problems,
) -> APIOrchestrationConfig | None:
    _unknown(data, CONFIG_KEYS, "", problems)
    raw_endpoints = data.get("endpoints", [])
    if isinstance(raw_endpoints, str) or not isinstance(raw_endpoints, list):
        problems.add(ConfigError("must be a list of endpoints", field="endpoints"))
        raw_endpoints = []
    elif not raw_endpoints:
        problems.add(ConfigError("a flow needs at least one endpoint", field="endpoints"))
    endpoints = [
        _endpoint(raw, index, importer, problems) for index, raw in enumerate(raw_endpoints)
    ]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in CONFIG_FIELDS:
            if key in HOOK_FIELDS and value is not None:
                hook = problems.attempt(hook_from_spec, value, key, allow_imports=importer)
                if hook is not None:
                    kwargs[key] = hook
            else:
                kwargs[key] = value
    info = FlowInfo(substitutions=found, source=source, imports=importer.found)
    for key in ("name", "description"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            problems.add(ConfigError("must be a string", field=key))
        else:
            setattr(info, key, value)
    transport = data.get("transport")
    if transport is not None and transport not in TRANSPORT_NAMES:
        problems.add(ConfigError(f"must be one of {', '.join(TRANSPORT_NAMES)}", field="transport"))
    else:
        info.transport = transport
    if data.get("layers") is not None:
        info.layers = _layers(data["layers"], importer, problems)
    if not endpoints:
        return None
    config = narrowing(
        APIOrchestrationConfig,
        {"endpoints": endpoints, **kwargs},
        problems,
        relocate=lambda exc: exc,
        drop=_drop_config_field,
    )
    if config is None or problems:
        return None
    _INFO[config] = info
    _attach_layers(config, info)
    return config


def _layers(raw: Any, importer: Importer, problems: Problems) -> list[Any] | None:
    """The ``layers:`` specs, each entry checked on its own so every bad one is reported."""
    if isinstance(raw, str) or not isinstance(raw, list):
        return problems.attempt(parse_layers, raw, allow_imports=importer)
    specs: list[Any] = []
    failed = False
    for index, entry in enumerate(raw):
        try:
            specs += parse_layers([entry], allow_imports=importer)
        except ConfigError as exc:
            failed = True
            for error in errors_of(exc):
                field = error.field or "layers[0]"
                message = error.message.removeprefix(f"{field}: ")
                where = f"layers[{index}]" + field.removeprefix("layers[0]")
                problems.add(ConfigError(message, field=where))
    return None if failed else specs


def _drop_config_field(kwargs: dict[str, Any], exc: ConfigError) -> bool:
    """Take the field ``exc`` names out of the config's arguments (an endpoint's
    ``depends_on`` or a duplicate ``name``: that endpoint's)."""
    field = exc.field or ""
    top = top_field(field)
    if top == "endpoints" and field.startswith("endpoints["):
        index = int(field[len("endpoints[") :].partition("]")[0])
        endpoints = list(kwargs["endpoints"])
        if not 0 <= index < len(endpoints) or not isinstance(endpoints[index], APIEndpoint):
            return False
        if field.endswith(".name"):  # a duplicate: renamed, its dependencies still checked
            changes: dict[str, Any] = {"name": f"endpoints[{index}]"}
        else:
            changes = {"depends_on": None}
        endpoints[index] = dataclasses.replace(endpoints[index], **changes)
        kwargs["endpoints"] = endpoints
        return True
    if top is not None and top in kwargs and top != "endpoints":
        del kwargs[top]
        return True
    return False


def _endpoint(raw: Any, index: int, importer: Importer, problems: Problems) -> APIEndpoint:
    """The endpoint at ``index``, or (its errors recorded) a stand-in with its name."""
    where = f"endpoints[{index}]"
    if not isinstance(raw, Mapping):
        problems.add(ConfigError(f"must be a mapping, got {type(raw).__name__}", field=where))
        return _stand_in(None, index)
    _unknown(raw, ENDPOINT_KEYS, where, problems)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in ENDPOINT_KEYS:
            continue
        if key in HOOK_FIELDS and value is not None:
            value = problems.attempt(
                hook_from_spec, value, f"{where}.{key}", key, allow_imports=importer
            )
            if value is None:
                continue
        elif (
            key == "headers"
            and value is not None
            and problems.attempt(_check_headers, value, f"{where}.headers") is None
        ):
            continue
        kwargs[key] = value
    for required in ("name", "url"):
        if required not in kwargs:
            problems.add(ConfigError("is required", field=f"{where}.{required}"))
    if "name" not in kwargs or "url" not in kwargs:
        return _stand_in(kwargs, index)
    endpoint = narrowing(
        APIEndpoint,
        dict(kwargs),
        problems,
        relocate=lambda exc: _relocate(exc, where),
        drop=lambda args, exc: _drop_endpoint_field(args, exc, index),
    )
    return endpoint if endpoint is not None else _stand_in(kwargs, index)


def _drop_endpoint_field(kwargs: dict[str, Any], exc: ConfigError, index: int) -> bool:
    top = top_field(exc.field)
    if top == "name":
        kwargs["name"] = f"endpoints[{index}]"
        return True
    if top == "url":
        kwargs["url"] = STAND_IN_URL
        return True
    if top is not None and top in kwargs:
        del kwargs[top]
        return True
    return False


#: Where a stand-in for a broken endpoint points (never called: the flow is invalid).
STAND_IN_URL = "http://invalid.invalid/"


def _stand_in(kwargs: Mapping[str, Any] | None, index: int) -> APIEndpoint:
    """An endpoint that keeps a broken one's name and dependencies, so the rest of the
    flow is checked as written (nothing is called: the flow has errors)."""
    name = (kwargs or {}).get("name")
    if not isinstance(name, str) or not name.strip():
        name = f"endpoints[{index}]"
    depends_on = (kwargs or {}).get("depends_on")
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        depends_on = None
    return APIEndpoint(name=name, url=STAND_IN_URL, depends_on=depends_on)


def _check_headers(headers: Any, where: str) -> bool:
    """True when ``headers`` maps names to strings (else a ConfigError)."""
    if not isinstance(headers, Mapping):
        raise ConfigError("must be a mapping of header names to strings", field=where)
    for name, value in headers.items():
        if not isinstance(value, str):
            raise ConfigError(
                f"must be a string, got {type(value).__name__} (quote it)",
                field=f"{where}.{name}",
            )
    return True


def _value(value: Any, path: str, strict: bool = True) -> Any:
    if isinstance(value, dict):
        return {str(k): _value(v, f"{path}.{k}", strict) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v, f"{path}[{i}]", strict) for i, v in enumerate(value)]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if not strict:
        return f"<{type(value).__name__}>"
    raise ConfigError(f"cannot write a {type(value).__name__} to a flow", field=path)


def _hook(value: Any, path: str, strict: bool) -> str | None:
    try:
        return hook_to_spec(value, path)
    except ConfigError:
        if strict:
            raise
        return f"<python {getattr(value, '__qualname__', type(value).__name__)}>"


def _fields(
    obj: Any, fields: Mapping[str, dataclasses.Field[Any]], where: str, strict: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in fields.items():
        value = getattr(obj, name)
        if f.default is not dataclasses.MISSING and value == f.default and name != "mode":
            continue
        path = f"{where}.{name}" if where else name
        if name in HOOK_FIELDS:
            out[name] = _hook(value, path, strict)
        elif name == "mode":
            out[name] = value.value
        else:
            out[name] = _value(value, path, strict)
    return out


def config_to_dict(
    config: APIOrchestrationConfig, *, templates: bool = True, strict: bool = True
) -> dict[str, Any]:
    """The flow mapping of ``config`` (fields left at their defaults are omitted);
    ``config_from_dict`` of it gives an equal config. Values that came from ``${VAR}``
    are written back as ``${VAR}`` unless ``templates=False``. Hooks must be JMESPath
    expressions, import references or importable module-level functions; with
    ``strict=False`` other hooks are written as ``"<python name>"`` (for display only)."""
    info = flow_info(config)
    out: dict[str, Any] = {}
    if info.name is not None:
        out["name"] = info.name
    if info.description is not None:
        out["description"] = info.description
    out.update(_fields(config, CONFIG_FIELDS, "", strict))
    out["endpoints"] = [
        _fields(endpoint, ENDPOINT_FIELDS, f"endpoints[{i}]", strict)
        for i, endpoint in enumerate(config.endpoints)
    ]
    if info.layers is not None:
        out["layers"] = [spec.to_spec() for spec in info.layers]
    if info.transport is not None:
        out["transport"] = info.transport
    if templates:
        _restore(out, info.substitutions)
    return out


def _restore(out: dict[str, Any], found: Substitutions) -> None:
    """Put ``${VAR}`` templates back where the loaded values are unchanged."""
    for path, template in found.templates.items():
        node: Any = out
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if node is None or not path:
            continue
        last = path[-1]
        try:
            current = node[last]
        except (KeyError, IndexError, TypeError):
            continue
        if current == found.results.get(path):
            node[last] = template
