"""Which import references a flow may use: refused unless the caller names the modules.

A flow is data. An import reference (``"package.module:function"``) makes loading it run
that module's code and lets the flow call any function it names (``builtins:eval`` with a
JMESPath string literal runs a shell command), so :func:`lamina.flows.load_flow` refuses
every import reference unless ``allow_imports`` names the modules it may come from:

* ``False`` or ``None`` (the default): none;
* a list of module prefixes (``["myproject.transforms"]``, or ``"a,b.c"``): modules
  equal to or under one of them, matched on whole dotted names;
* ``True`` is refused with a :class:`ConfigError`. It used to mean "any module but a
  denylist", and no denylist is complete: ``timeit:timeit``, ``yaml:unsafe_load``,
  ``cProfile:run``, ``pdb``, ``code``, ``linecache:getlines`` and countless installed
  packages run code or read files. Name your own modules instead.

What a reference reaches is checked too: every module it passes through and the module
that defines the function or class it names must be under an allowed prefix, so
``myproject.hooks:os.system``, or a function ``myproject.hooks`` imported from
``subprocess`` or ``json``, is refused unless that module is named as well.
:data:`REFUSED_MODULES` are named in the refusal as modules that run commands or code.

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
    "BLANKET_REFUSED",
    "IMPORT_REF",
    "REFUSED_MODULES",
    "FlowImport",
    "ImportPolicy",
    "Importer",
    "PendingImport",
]

IMPORT_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

#: Modules (and their submodules) that evaluate code, start processes, or read and write
#: files: a refusal that names one says so. Like any module, one is allowed only by an
#: allow-list that names it (or a prefix of it).
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


BLANKET_REFUSED = (
    "True is no longer accepted: no list of refused modules is complete (timeit:timeit, "
    "yaml:unsafe_load, cProfile:run, pdb, code and many installed packages run code), so "
    "name the modules a flow may import: allow_imports=['myproject.transforms'] "
    "(lamina run --allow-imports-from myproject.transforms)"
)


@dataclass(frozen=True)
class ImportPolicy:
    """Which modules a flow may import (see the module docstring): those under
    ``prefixes``; none when it is empty."""

    prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.prefixes, str) or not all(
            isinstance(p, str) and MODULE_NAME.match(p) for p in self.prefixes
        ):
            raise ConfigError(
                f"must hold module names such as 'myproject.transforms', got {self.prefixes!r}",
                field="allow_imports",
            )

    @property
    def allowed(self) -> bool:
        """Whether any module may be imported."""
        return bool(self.prefixes)

    @classmethod
    def of(cls, value: bool | str | Iterable[str] | ImportPolicy | None) -> ImportPolicy:
        """The policy for an ``allow_imports`` value: False or None (nothing), a list of
        module prefixes (or one comma-separated string), or a policy. ``True`` is a
        :class:`ConfigError` (:data:`BLANKET_REFUSED`)."""
        if isinstance(value, ImportPolicy):
            return value
        if value is None or value is False:
            return cls()
        if value is True:
            raise ConfigError(BLANKET_REFUSED, field="allow_imports")
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, Iterable):
            raise ConfigError(
                f"must be a list of module prefixes (or False), got {value!r}",
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
        return cls(tuple(dict.fromkeys(prefixes)))

    def listed(self, module: str) -> bool:
        """Whether an allow-list prefix covers ``module``."""
        return any(_under(module, prefix) for prefix in self.prefixes)

    def refusal(self, module: str) -> str | None:
        """Why importing ``module`` is refused, or None when it is permitted."""
        if self.listed(module):
            return None
        how = HOW_TO_ALLOW.format(module=module)
        if not self.prefixes:
            return "flows may not import code unless the caller allows it: " + how
        why = f"{module!r} is not under the allowed prefixes ({', '.join(self.prefixes)})"
        runner = _runner(module)
        if runner is not None:
            why += f"; {runner!r} can run commands or code"
        return f"{why}: {how}"

    def describe(self) -> str:
        """The policy in words (for ``lamina validate``)."""
        if not self.prefixes:
            return "imports are not allowed"
        return f"imports allowed from {', '.join(self.prefixes)}"


def _runner(module: str) -> str | None:
    """The entry of :data:`REFUSED_MODULES` that ``module`` is or is under, if any."""
    return next((m for m in REFUSED_MODULES if _under(module, m)), None)


#: What a reference may reach through its attributes: a module, or a function or class
#: whose ``__module__`` says where it was defined (an instance's would name its class's).
_DEFINED = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    type,
)


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
            # ``allowed.module:os.system`` reaches another module through an allowed one
            if not isinstance(obj, _DEFINED):
                continue
            home = obj.__name__ if isinstance(obj, types.ModuleType) else obj.__module__
            if not isinstance(home, str):  # e.g. a method of a builtin object
                raise ConfigError(
                    f"import of {reference!r} refused: {part!r} comes from no module that "
                    "an allow-list could name",
                    field=where,
                )
            if not self.policy.listed(home):
                why = self.policy.refusal(home)
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
