"""``loop=``: which event loop lamina makes when it owns the loop (``lamina._loop``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lamina
from lamina._loop import LOOP_NAMES, loop_factory, run

uvloop = pytest.importorskip("uvloop")
ROOT = Path(__file__).resolve().parents[1]


async def loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_each_name_makes_its_loop() -> None:
    assert run(loop_type(), loop="uvloop") is uvloop.Loop
    assert run(loop_type(), loop="auto") is uvloop.Loop  # installed: auto picks it
    asyncio_loop = run(loop_type(), loop="asyncio")
    assert not issubclass(asyncio_loop, uvloop.Loop)
    assert issubclass(asyncio_loop, asyncio.BaseEventLoop)
    assert LOOP_NAMES == ("auto", "asyncio", "uvloop")


def test_an_unknown_name_is_a_config_error_naming_the_field_and_the_choices() -> None:
    with pytest.raises(lamina.ConfigError, match="'auto', 'asyncio', 'uvloop'") as caught:
        loop_factory("trio")
    assert caught.value.field == "loop"
    with pytest.raises(lamina.ConfigError) as caught:
        loop_factory("trio", field="--loop")
    assert caught.value.field == "--loop"


def test_a_refused_name_never_leaves_the_coroutine_unawaited() -> None:
    main = loop_type()
    with pytest.raises(lamina.ConfigError):
        run(main, loop="nope")
    assert main.cr_frame is None  # closed, not left for a "never awaited" warning


def test_without_uvloop_auto_is_asyncio_and_uvloop_names_the_extra() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["uvloop"] = None  # not installed
        from lamina import ConfigError, MissingExtra
        from lamina._loop import loop_factory
        print(loop_factory("auto") is asyncio.new_event_loop)
        try:
            loop_factory("uvloop")
        except MissingExtra as exc:
            print(exc.extra, exc.field, isinstance(exc, ConfigError), exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    auto, missing = done.stdout.splitlines()
    assert auto == "True"
    assert missing.startswith("uvloop loop True ")
    assert "pip install 'lamina[uvloop]'" in missing
