"""Which event loop lamina runs on when it owns the loop (``execute_sync()``, the CLI).

``"auto"`` (the default) is uvloop when ``lamina[uvloop]`` is installed, else asyncio's
own loop, as uvicorn's ``--loop auto`` does; ``"asyncio"`` and ``"uvloop"`` pick one.
Code that runs its own loop (``asyncio.run``, a web framework) chooses it there: lamina
works on either.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._errors import ConfigError
from ._extras import require

__all__ = ["LOOP_NAMES", "loop_factory", "run"]

#: The names ``loop=`` (and ``lamina run --loop``) accept.
LOOP_NAMES = ("auto", "asyncio", "uvloop")

T = TypeVar("T")


def loop_factory(
    loop: str = "auto", *, field: str = "loop"
) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new event loop of the kind ``loop`` names.

    An unknown name is a :class:`lamina.ConfigError` naming ``field``; ``"uvloop"``
    without uvloop installed is a :class:`lamina.MissingExtra` naming ``lamina[uvloop]``.
    """
    if loop not in LOOP_NAMES:
        raise ConfigError(
            f"must be one of {', '.join(map(repr, LOOP_NAMES))}, got {loop!r}", field=field
        )
    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    if loop == "asyncio":
        return asyncio.new_event_loop
    require(("uvloop",), "uvloop", "loop='uvloop'", field=field)
    import uvloop

    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_loop


def run(main: Coroutine[Any, Any, T], *, loop: str = "auto") -> T:
    """``asyncio.run(main)`` on a new loop of the kind ``loop`` names."""
    try:
        factory = loop_factory(loop)
    except BaseException:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
