"""Read a flow file: YAML (safe loader only), TOML or JSON."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .._errors import ConfigError
from ..orchestration.config import APIOrchestrationConfig
from .config import config_from_dict

__all__ = ["load_flow", "parse_flow_text"]

YAML_SUFFIXES = (".yaml", ".yml")


def parse_flow_text(text: str, fmt: str = "yaml", *, source: str = "<flow>") -> Any:
    """Parse flow text as ``yaml``, ``toml`` or ``json`` into plain data.

    YAML goes through ``yaml.safe_load``: tags such as ``!!python/object/apply`` are
    rejected before anything is constructed.
    """
    try:
        if fmt == "toml":
            return tomllib.loads(text)
        if fmt == "json":
            return json.loads(text)
        if fmt == "yaml":
            return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}", field=None) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}", field=None) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}", field=None) from None
    raise ConfigError(f"unknown flow format {fmt!r} (yaml, toml or json)", field="format")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        return f"{problem}{where}"
    return str(exc).splitlines()[0]


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in (".toml", ".json"):
        return suffix[1:]
    raise ConfigError(
        f"cannot tell the format of {path.name!r}: use .yaml, .yml, .toml or .json",
        field="path",
    )


def load_flow(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> APIOrchestrationConfig:
    """Read and validate the flow file at ``path`` (format from its suffix).

    ``${VAR}`` values come from ``env`` (default ``os.environ``). Errors are
    :class:`lamina.ConfigError` with ``field`` set to the path in the flow
    (``endpoints[2].depends_on``) and, for YAML, the line in the message.
    The flow's ``layers:`` list is applied by :func:`lamina.flows.build_orchestrator`
    (or pass ``layers=flow_layers(config)`` to :class:`lamina.APIOrchestrator`).
    """
    file = Path(path)
    fmt = _format(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read flow file {str(file)!r}: {exc.strerror}", field="path"
        ) from None
    data = parse_flow_text(text, fmt, source=file.name)
    if data is None:
        raise ConfigError(f"{file.name}: the flow file is empty", field=None)
    try:
        return config_from_dict(data, env=env, source=str(file))
    except ConfigError as exc:
        line = _line_of(text, exc.field) if fmt == "yaml" and exc.field else None
        if line is None:
            raise
        message = exc.message.partition(": ")[2]
        raise ConfigError(f"{message} ({file.name}, line {line})", field=exc.field) from None


def _line_of(text: str, field: str) -> int | None:
    """The 1-based line of ``field`` (``endpoints[2].depends_on``) in YAML ``text``."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)  # nodes only, no objects
    except yaml.YAMLError:
        return None
    line = None
    for part in _split(field):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next((kv for kv in node.value if kv[0].value == part), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _split(field: str) -> list[str | int]:
    parts: list[str | int] = []
    for chunk in field.split("."):
        name, _, rest = chunk.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            if index.isdigit():
                parts.append(int(index))
            rest = rest.lstrip("[")
    return parts
