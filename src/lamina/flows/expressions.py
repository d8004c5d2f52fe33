"""Hooks written in a flow: an import reference or a JMESPath expression.

``"mypkg.hooks:parse_user"`` imports ``parse_user`` from ``mypkg.hooks`` (only when the
caller allows it: see :mod:`lamina.flows.imports`); any other string is a JMESPath
expression (``"user.name"``, ``"amount > `100`"``). The mapping forms ``{import: ...}``
and ``{jmespath: ...}`` say which explicitly. Nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jmespath
from jmespath import functions as jmespath_functions
from jmespath.exceptions import JMESPathError, ParseError
from jmespath.parser import ParsedResult

from .._errors import ConfigError
from .imports import (
    IMPORT_REF,
    ImportedHook,
    Importer,
    ImportPolicy,
    PendingImport,
    lookup_loaded,
)

__all__ = [
    "HOOK_FIELDS",
    "Expression",
    "ImportedHook",
    "hook_from_spec",
    "hook_to_spec",
    "import_reference",
]

AllowImports = bool | str | Iterable[str] | ImportPolicy | Importer | None

#: Hook fields and what the hook receives (see docs/flows.md).
HOOK_FIELDS: dict[str, str] = {
    "response_parser": "the response body (JSON, else text)",
    "transform_input": "the context: input keys plus finished results by name",
    "transform_output": "the parsed value",
    "condition": "the context: input keys plus finished results by name",
    "error_handler": "{type, message, status_code, endpoint}",
    "result_merger": "the list of results, in endpoint order",
    "result_transformer": "the run's value",
    "cache_key_generator": "{name, url, method, params}",
}


FUNCTIONS = frozenset(jmespath_functions.Functions().FUNCTION_TABLE)


def _unknown_function(node: Any) -> str | None:
    """The first function name in a parsed expression that JMESPath does not define."""
    if isinstance(node, dict):
        if node.get("type") == "function_expression" and node.get("value") not in FUNCTIONS:
            return str(node.get("value"))
        for child in node.get("children", ()):
            found = _unknown_function(child)
            if found is not None:
                return found
    return None


def _truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null and empty strings, lists and objects are false."""
    return not (value is None or value is False or value in ("", [], {}))


def _response_data(response: Any) -> Any:
    content = getattr(response, "content", b"")
    if not content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_data(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "status_code": getattr(exc, "status_code", None),
        "endpoint": getattr(exc, "endpoint", None),
    }


def _endpoint_data(endpoint: Any) -> dict[str, Any]:
    return {
        "name": getattr(endpoint, "name", None),
        "url": getattr(endpoint, "url", None),
        "method": getattr(endpoint, "method", None),
        "params": dict(getattr(endpoint, "params", None) or {}),
    }


#: Most bare numbers :func:`_explain` puts in backticks to find a working spelling.
MAX_FIXES = 20


def _explain(source: str, exc: JMESPathError) -> str:
    """Why ``source`` does not parse, the whole expression quoted, and for the usual
    mistake, a bare number (``amount > 100``), the spelling that works (``amount > `100```)."""
    if isinstance(exc, ParseError):
        where = getattr(exc, "lex_position", None)
        token = getattr(exc, "token_value", None)
        if getattr(exc, "token_type", None) == "EOF" or token is None:
            detail = f"it ends too early (column {where})"
        else:
            detail = f"unexpected {token!r} at column {where}"
    else:
        detail = str(exc).strip().splitlines()[0]
    message = f"invalid JMESPath expression {source!r}: {detail}"
    fixed = _with_literals(source, exc)
    if fixed is not None:
        message += (
            f"; numbers are literals in JMESPath, written in backticks: {fixed!r}"
            " (strings: 'raw string' or `\"json\"`)"
        )
    return message


def _with_literals(source: str, exc: JMESPathError) -> str | None:
    """``source`` with each bare number put in backticks, if that makes it parse."""
    fixed = source
    for _ in range(MAX_FIXES):
        if not isinstance(exc, ParseError) or getattr(exc, "token_type", None) != "NUMBER":
            return None
        start = getattr(exc, "lex_position", None)
        if not isinstance(start, int):
            return None
        end = start
        while end < len(fixed) and (fixed[end].isdigit() or fixed[end] in "-.eE+"):
            end += 1
        if end == start:
            return None
        fixed = f"{fixed[:start]}`{fixed[start:end]}`{fixed[end:]}"
        try:
            jmespath.compile(fixed)
        except JMESPathError as again:
            exc = again
            continue
        return fixed
    return None


class Expression:
    """A compiled JMESPath expression used as the hook ``kind`` (a field name).

    ``condition`` returns a bool (JMESPath truthiness), ``cache_key_generator`` a
    string; ``response_parser``, ``error_handler`` and ``cache_key_generator`` first
    turn their argument into JSON-like data (see :data:`HOOK_FIELDS`).
    """

    __slots__ = ("_compiled", "kind", "source")

    def __init__(self, source: str, kind: str = "transform_output") -> None:
        if not isinstance(source, str) or not source.strip():
            raise ConfigError("must be a non-empty JMESPath expression", field=kind)
        try:
            compiled: ParsedResult = jmespath.compile(source)
        except JMESPathError as exc:
            raise ConfigError(_explain(source, exc), field=kind) from None
        unknown = _unknown_function(compiled.parsed)
        if unknown is not None:
            raise ConfigError(
                f"invalid JMESPath expression {source!r}: unknown function {unknown}()",
                field=kind,
            )
        self.source = source
        self.kind = kind
        self._compiled = compiled

    def search(self, data: Any) -> Any:
        """Evaluate on JSON-like ``data``."""
        return self._compiled.search(data)

    def __call__(self, arg: Any) -> Any:
        kind = self.kind
        if kind == "response_parser":
            return self.search(_response_data(arg))
        if kind == "error_handler":
            return self.search(_error_data(arg))
        if kind == "cache_key_generator":
            key = self.search(_endpoint_data(arg))
            return key if isinstance(key, str) else json.dumps(key, sort_keys=True, default=str)
        if kind == "condition":
            return _truthy(self.search(arg))
        return self.search(arg)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def import_reference(
    reference: str, field: str = "hook", *, allow_imports: AllowImports = False
) -> Any:
    """The object named by ``"package.module:attr.sub"``, imported only when
    ``allow_imports`` permits its module (ConfigError naming ``field`` otherwise, or
    when it cannot be imported)."""
    return Importer.of(allow_imports).load(reference, field)


def hook_from_spec(
    spec: Any, field: str, kind: str | None = None, *, allow_imports: AllowImports = False
) -> Callable[..., Any]:
    """Build the hook for ``kind`` (default: the last part of ``field``) from its flow spec.

    An import reference is refused unless ``allow_imports`` permits its module (``True``,
    or a list of module prefixes: see :mod:`lamina.flows.imports`)."""
    kind = kind or field.rsplit(".", 1)[-1]
    importer = Importer.of(allow_imports)
    if isinstance(spec, Mapping):
        keys = set(spec)
        if keys == {"import"}:
            return _imported(spec["import"], f"{field}.import", importer)
        if keys == {"jmespath"}:
            return _expression(spec["jmespath"], f"{field}.jmespath", kind)
        raise ConfigError("a hook mapping has exactly one key, 'import' or 'jmespath'", field=field)
    if not isinstance(spec, str):
        raise ConfigError(
            f"must be an import reference or a JMESPath expression, got {type(spec).__name__}",
            field=field,
        )
    if IMPORT_REF.match(spec.strip()):
        return _imported(spec.strip(), field, importer)
    return _expression(spec, field, kind)


def _imported(reference: Any, field: str, importer: Importer) -> ImportedHook:
    func = importer.load(reference, field)
    if isinstance(func, PendingImport):  # nothing was imported
        return func
    if not callable(func):
        raise ConfigError(f"{reference!r} is not callable", field=field)
    return ImportedHook(reference, func)


def _expression(source: Any, field: str, kind: str) -> Expression:
    try:
        return Expression(source, kind)
    except ConfigError as exc:
        raise ConfigError(exc.message.partition(": ")[2], field=field) from None


def hook_to_spec(hook: Any, field: str) -> str | None:
    """The flow spelling of a hook: its expression, its import reference, or the
    ``module:qualname`` of a module-level function; ConfigError for lambdas and closures."""
    if hook is None:
        return None
    if isinstance(hook, Expression):
        return hook.source
    if isinstance(hook, ImportedHook):
        return hook.reference
    module = getattr(hook, "__module__", None)
    qualname = getattr(hook, "__qualname__", None)
    if (
        isinstance(module, str)
        and isinstance(qualname, str)
        and "<" not in qualname
        and module != "__main__"
    ):
        reference = f"{module}:{qualname}"
        if lookup_loaded(reference) is hook:  # never imports
            return reference
    raise ConfigError(
        f"cannot write {hook!r} to a flow: use an import reference or a JMESPath expression",
        field=field,
    )
