"""Which import references a flow may use: refused unless the caller opts in.

A flow is data. An import reference (``"package.module:function"``) makes loading it run
that module's code and lets the flow call any function it names (``builtins:eval`` with a
JMESPath string literal runs a shell command), so :func:`lamina.flows.load_flow` refuses
every import reference unless it is given ``allow_imports``:

* ``False`` (the default): none;
* a list of module prefixes (``["myproject.transforms"]``, or ``"a,b.c"``): modules
  equal to or under one of them;
* ``True``: any module except :data:`REFUSED_MODULES` (``builtins``, ``os``,
  ``subprocess``, ...), which run code or touch processes and files; name one of those
  in an allow-list to use it anyway.

With ``resolve_imports=False`` (what ``lamina validate`` and ``lamina graph`` do) nothing
is imported: each reference becomes a :class:`PendingImport` that refuses to be called,
and :attr:`FlowInfo.imports <lamina.flows.FlowInfo>` lists what the flow would import and
whether the policy permits it.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigError

__all__ = [
    "IMPORT_REF",
    "REFUSED_MODULES",
    "FlowImport",
    "ImportPolicy",
    "Importer",
    "PendingImport",
]

IMPORT_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

#: Modules refused even with ``allow_imports=True`` (and their submodules): they evaluate
#: code, start processes, or read and write files. An allow-list that names one (or a
#: prefix of it) permits it.
REFUSED_MODULES = (
    "_io",
    "_pickle",
    "_posixsubprocess",
    "builtins",
    "code",
    "codeop",
    "ctypes",
    "importlib",
    "io",
    "marshal",
    "multiprocessing",
    "nt",
    "os",
    "pathlib",
    "pdb",
    "pickle",
    "posix",
    "pty",
    "runpy",
    "shelve",
    "shutil",
    "signal",
    "socket",
    "subprocess",
    "sys",
    "tempfile",
    "webbrowser",
)

HOW_TO_ALLOW = (
    "load_flow(..., allow_imports=[{module!r}]) or "
    "`lamina run --allow-imports-from {module}` allows it"
)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@dataclass(frozen=True)
class ImportPolicy:
    """Which modules a flow may import (see the module docstring)."""

    allowed: bool = False
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, value: bool | str | Iterable[str] | ImportPolicy | None) -> ImportPolicy:
        """The policy for an ``allow_imports`` value: a bool, a list of module prefixes
        (or one comma-separated string), or a policy."""
        if isinstance(value, ImportPolicy):
            return value
        if value is None or value is False:
            return cls()
        if value is True:
            return cls(allowed=True)
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, Iterable):
            raise ConfigError(
                f"must be True, False or a list of module prefixes, got {value!r}",
                field="allow_imports",
            )
        prefixes: list[str] = []
        for item in items:
            name = item.strip() if isinstance(item, str) else item
            if not isinstance(name, str) or not MODULE_NAME.match(name):
                raise ConfigError(
                    f"must hold module names such as 'myproject.transforms', got {item!r}",
                    field="allow_imports",
                )
            prefixes.append(name)
        if not prefixes:
            return cls()
        return cls(allowed=True, prefixes=tuple(dict.fromkeys(prefixes)))

    def listed(self, module: str) -> bool:
        """Whether an allow-list prefix covers ``module``."""
        return any(_under(module, prefix) for prefix in self.prefixes)

    def refusal(self, module: str) -> str | None:
        """Why importing ``module`` is refused, or None when it is permitted."""
        dangerous = self.dangerous(module)
        if dangerous is not None:
            return dangerous
        if not self.allowed:
            return "flows may not import code unless the caller allows it: " + HOW_TO_ALLOW.format(
                module=module
            )
        if self.prefixes and not self.listed(module):
            return (
                f"{module!r} is not under the allowed prefixes "
                f"({', '.join(self.prefixes)}): " + HOW_TO_ALLOW.format(module=module)
            )
        return None

    def dangerous(self, module: str) -> str | None:
        """Why ``module`` is refused as one of :data:`REFUSED_MODULES` (None if it is not
        one, or an allow-list names it)."""
        hit = next((m for m in REFUSED_MODULES if _under(module, m)), None)
        if hit is None or self.listed(module):
            return None
        return (
            f"{hit!r} can run commands or code, so it is refused even with "
            f"allow_imports=True; only an allow-list that names it (allow_imports=[{hit!r}], "
            f"--allow-imports-from {hit}) permits it"
        )

    def describe(self) -> str:
        """The policy in words (for ``lamina validate``)."""
        if not self.allowed:
            return "imports are not allowed"
        if self.prefixes:
            return f"imports allowed from {', '.join(self.prefixes)}"
        return "imports allowed, except builtins, os, subprocess and others that run code"


@dataclass(frozen=True)
class FlowImport:
    """One import reference in a flow: where, what, and the policy's verdict."""

    field: str
    reference: str
    refused: str | None = None

    @property
    def module(self) -> str:
        return self.reference.partition(":")[0]

    @property
    def allowed(self) -> bool:
        return self.refused is None


class ImportedHook:
    """A callable imported from ``module:attribute``; remembers its reference."""

    __slots__ = ("func", "reference")

    def __init__(self, reference: str, func: Callable[..., Any]) -> None:
        self.reference = reference
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"ImportedHook({self.reference!r})"


def _not_imported(*args: Any, **kwargs: Any) -> Any:
    raise ConfigError(
        "this import reference was not imported: the flow was loaded with "
        "resolve_imports=False (as lamina validate and lamina graph do); load it again "
        "with allow_imports to run it",
        field="allow_imports",
    )


class PendingImport(ImportedHook):
    """An import reference left unresolved (``resolve_imports=False``): raises when called."""

    __slots__ = ()

    def __init__(self, reference: str) -> None:
        super().__init__(reference, _not_imported)

    def __repr__(self) -> str:
        return f"PendingImport({self.reference!r})"


@dataclass
class Importer:
    """Resolves a flow's import references under a policy and records each one."""

    policy: ImportPolicy = field(default_factory=ImportPolicy)
    resolve: bool = True
    found: list[FlowImport] = field(default_factory=list)

    @classmethod
    def of(cls, value: Any, *, resolve: bool = True) -> Importer:
        if isinstance(value, Importer):
            return value
        return cls(ImportPolicy.of(value), resolve=resolve)

    def load(self, reference: Any, where: str) -> Any:
        """The object ``reference`` names (a :class:`PendingImport` when not resolving);
        ConfigError naming ``where`` when the policy refuses it."""
        module, attrs = split_reference(reference, where)
        refused = self.policy.refusal(module)
        self.found.append(FlowImport(where, reference, refused))
        if not self.resolve:
            return PendingImport(reference)
        if refused is not None:
            raise ConfigError(f"import of {reference!r} refused: {refused}", field=where)
        return self._resolve(reference, module, attrs, where)

    def _resolve(self, reference: str, module: str, attrs: list[str], where: str) -> Any:
        try:
            obj: Any = importlib.import_module(module)
        except Exception as exc:
            raise ConfigError(
                f"cannot import {module!r} for {reference!r}: {type(exc).__name__}: {exc}",
                field=where,
            ) from exc
        for part in attrs:
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ConfigError(
                    f"{reference!r}: module {module!r} has no attribute {'.'.join(attrs)!r}",
                    field=where,
                ) from None
            # ``allowed.module:os.system`` reaches a refused module through an allowed one
            home = obj.__name__ if isinstance(obj, types.ModuleType) else None
            home = home or getattr(obj, "__module__", None)
            why = self.policy.dangerous(home) if isinstance(home, str) else None
            if why is not None:
                raise ConfigError(
                    f"import of {reference!r} refused: it reaches {home!r}: {why}", field=where
                )
        return obj


def split_reference(reference: Any, where: str) -> tuple[str, list[str]]:
    """``"pkg.mod:a.b"`` -> ``("pkg.mod", ["a", "b"])``; ConfigError for anything else,
    and for dunder names (``__globals__``, ``__builtins__``) in the attribute path."""
    if not isinstance(reference, str) or not IMPORT_REF.match(reference):
        raise ConfigError(
            f"not an import reference (expected 'package.module:name'): {reference!r}",
            field=where,
        )
    module, _, attr_path = reference.partition(":")
    attrs = attr_path.split(".")
    if any(part.startswith("__") for part in attrs):
        raise ConfigError(
            f"{reference!r}: an import reference may not name dunder attributes",
            field=where,
        )
    return module, attrs


def lookup_loaded(reference: str) -> Any:
    """The object ``reference`` names if its module is already imported (never imports)."""
    module, _, attr_path = reference.partition(":")
    obj: Any = sys.modules.get(module)
    if obj is None:
        return None
    for part in attr_path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
