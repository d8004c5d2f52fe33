"""Read a flow file: YAML (safe loader only), TOML or JSON, within the limits of
:mod:`lamina.flows.limits` (size, nesting, values, UTF-8)."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .._errors import ConfigError
from ..orchestration.config import APIOrchestrationConfig
from .config import config_from_dict
from .limits import (
    MAX_FLOW_BYTES,
    BoundedYAMLLoader,
    check_depth_text,
    check_size_text,
    too_deep,
    too_large,
    yaml_limit,
)
from .problems import FlowErrors, errors_of

__all__ = ["load_flow", "parse_flow_text"]

YAML_SUFFIXES = (".yaml", ".yml")


def parse_flow_text(text: str, fmt: str = "yaml", *, source: str = "<flow>") -> Any:
    """Parse flow text as ``yaml``, ``toml`` or ``json`` into plain data.

    YAML is loaded with the safe loader's rules (tags such as ``!!python/object/apply``
    are rejected before anything is constructed). Text over 512 KiB, nesting deeper than
    64 levels and more than 100,000 values are ConfigErrors, found before the parser
    recurses (see :mod:`lamina.flows.limits`).
    """
    return _parse(text, fmt, source)[0]


def _parse(text: str, fmt: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The data, and for YAML the node tree (where :func:`_line_of` finds lines)."""
    if fmt not in ("yaml", "toml", "json"):
        raise ConfigError(f"unknown flow format {fmt!r} (yaml, toml or json)", field="format")
    check_size_text(text, source)
    if fmt != "yaml":
        check_depth_text(text, fmt, source)
    try:
        if fmt == "toml":
            return tomllib.loads(text), None
        if fmt == "json":
            return json.loads(text), None
        loader = BoundedYAMLLoader(text)  # the safe constructor, within the limits
        try:
            node = loader.get_single_node()
            return (None if node is None else loader.construct_document(node)), node
        finally:
            loader.dispose()
    except RecursionError:  # the bracket scan missed a way to nest: still a clean error
        raise too_deep(source) from None
    except yaml.YAMLError as exc:
        limit = yaml_limit(exc)
        if limit is not None:
            raise ConfigError(f"{source}: {limit}", field=None) from None
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}", field=None) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}", field=None) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}", field=None) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        problem = str(exc).partition(";")[0]
        raise ConfigError(f"{source}: not valid {fmt.upper()}: {problem}", field=None) from None


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
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    allow_imports: bool | str | Iterable[str] = False,
    resolve_imports: bool = True,
) -> APIOrchestrationConfig:
    """Read and validate the flow file at ``path`` (format from its suffix).

    ``${VAR}`` values come from ``env`` (default ``os.environ``). Errors are
    :class:`lamina.ConfigError` with ``field`` set to the path in the flow
    (``endpoints[2].depends_on``) and, for YAML, the line in the message.
    The flow's ``layers:`` list is applied by :func:`lamina.flows.build_orchestrator`
    (or pass ``layers=flow_layers(config)`` to :class:`lamina.APIOrchestrator`).

    Import references (``"pkg.mod:func"``) are code, so they are refused unless
    ``allow_imports`` permits them: ``True`` (any module but ``builtins``, ``os``,
    ``subprocess`` and the rest of :data:`lamina.flows.imports.REFUSED_MODULES`), or a
    list of module prefixes such as ``["myproject.transforms"]``. With
    ``resolve_imports=False`` nothing is imported at all: the config is for
    inspection, and ``flow_info(config).imports`` lists each reference with whether
    ``allow_imports`` permits it.

    A file over 512 KiB, nesting deeper than 64 levels, more than 100,000 values or
    bytes that are not UTF-8 are ConfigErrors, found without parsing the whole file.
    """
    file = Path(path)
    fmt = _format(file)
    text = _read(file)
    data, node = _parse(text, fmt, source=file.name)
    if data is None:
        raise ConfigError(f"{file.name}: the flow file is empty", field=None)
    twice = _written_twice(node, file.name) if node is not None else []
    try:
        config = config_from_dict(
            data,
            env=env,
            source=str(file),
            allow_imports=allow_imports,
            resolve_imports=resolve_imports,
        )
    except ConfigError as exc:
        if node is None:
            raise
        located = [_located(error, node, file.name) for error in errors_of(exc)]
        if len(located) == 1 and not twice:
            if located[0][1] is exc:
                raise
            raise located[0][1] from None
        located += twice
        located.sort(key=lambda pair: pair[0])  # in file order
        omitted = getattr(exc, "omitted", 0)
        raise FlowErrors((error for _, error in located), omitted=omitted) from None
    if twice:
        twice.sort(key=lambda pair: pair[0])
        if len(twice) == 1:
            raise twice[0][1]
        raise FlowErrors(error for _, error in twice)
    return config


def _written_twice(root: yaml.Node, name: str) -> list[tuple[int, ConfigError]]:
    """A ConfigError, with its line, for each key a YAML mapping holds twice (YAML keeps
    the last one without a word, so the first is silently ignored)."""
    from .env import render_path

    found: list[tuple[int, ConfigError]] = []
    seen_nodes: set[int] = set()  # an alias is the same node: walked once
    pending: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    while pending:
        node, path = pending.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    line = key.start_mark.line + 1
                    if key.value in lines:
                        found.append(
                            (
                                line,
                                ConfigError(
                                    f"written twice (lines {lines[key.value]} and {line}; "
                                    f"YAML keeps the last one) ({name}, line {line})",
                                    field=render_path((*path, key.value)),
                                ),
                            )
                        )
                    lines[key.value] = line
                    pending.append((value, (*path, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return found


def _located(exc: ConfigError, node: yaml.Node, name: str) -> tuple[int, ConfigError]:
    """``exc`` with the YAML line of its field added to the message, when found, and
    that line (0 when unknown)."""
    line = _line_of(node, exc.field) if exc.field else None
    if line is None:
        return 0, exc
    message = exc.message.partition(": ")[2]
    return line, ConfigError(f"{message} ({name}, line {line})", field=exc.field)


def _read(file: Path) -> str:
    """The file's text: its size checked before reading, UTF-8 or a ConfigError."""
    try:
        with file.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_FLOW_BYTES:
                raise too_large(file.name, size)
            raw = stream.read(MAX_FLOW_BYTES + 1)  # a FIFO or /proc file has no size
    except OSError as exc:
        raise ConfigError(
            f"cannot read flow file {str(file)!r}: {exc.strerror}", field="path"
        ) from None
    if len(raw) > MAX_FLOW_BYTES:
        raise too_large(file.name, len(raw))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{file.name}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
            f"(line {line}); save the file as UTF-8",
            field=None,
        ) from None


def _line_of(node: Any, field: str) -> int | None:
    """The 1-based line of ``field`` (``endpoints[2].depends_on``) in a YAML node tree."""
    line = None
    for part in _split(field):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            # the last one: YAML keeps the last of two equal keys
            match = next((kv for kv in reversed(node.value) if kv[0].value == part), None)
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
