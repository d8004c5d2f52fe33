"""Optional extras: a missing one is a plain :class:`MissingExtra` at construction,
naming the ``pip install`` that brings it, never a traceback at run time."""

from __future__ import annotations

import importlib

from ._errors import ConfigError

__all__ = ["MissingExtra", "require"]


class MissingExtra(ConfigError, ImportError):
    """A feature needs an optional extra that is not installed. A
    :class:`lamina.ConfigError` (and an ``ImportError``); ``extra`` is its name."""

    def __init__(self, message: str, *, extra: str, field: str | None = None) -> None:
        self.extra = extra
        super().__init__(message, field=field)


def require(modules: tuple[str, ...], extra: str, what: str, *, field: str | None = None) -> None:
    """Import ``modules`` or raise :class:`MissingExtra`: ``"<what> needs the <extra> extra:
    pip install 'lamina[<extra>]' (no module named ...)"`` when a module is not there, or,
    when it is there but fails to import, the real error (chained): a broken install is
    not reported as a missing one."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = exc.name or ""
            absent = isinstance(exc, ModuleNotFoundError) and (
                module == missing or module.startswith(f"{missing}.")
            )
            if absent:
                raise MissingExtra(
                    f"{what} needs the {extra!r} extra: pip install 'lamina[{extra}]' "
                    f"(no module named {missing!r})",
                    extra=extra,
                    field=field,
                ) from None
            raise MissingExtra(
                f"{what} needs the {extra!r} extra, which is installed but fails to import: "
                f"{module} raised {type(exc).__name__}: {exc} "
                f"(reinstall it: pip install --force-reinstall 'lamina[{extra}]')",
                extra=extra,
                field=field,
            ) from exc
