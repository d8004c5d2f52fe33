"""The transports package: its public names, the old import paths, aiohttp as an optional
extra, and the one error table both clients' exceptions go through."""

from __future__ import annotations

import builtins
import importlib
import subprocess
import sys
import types

import aiohttp
import httpx
import pytest

import lamina
import lamina.transports
from lamina import (
    ConfigError,
    ConnectError,
    ConnectTimeout,
    LaminaError,
    Request,
    TimeoutError,
    TransportError,
)
from lamina.transports._shared import ERRORS, map_error

REQUEST = Request("GET", "http://api.test/x?token=s3cr3t-abcdef123", endpoint="things")


def test_all_is_sorted_and_importable() -> None:
    names = lamina.transports.__all__
    assert names == sorted(names)
    assert names == ["AiohttpTransport", "HttpxTransport", "PyreqwestTransport", "Transport"]
    for name in names:
        assert getattr(lamina.transports, name) is not None
    with pytest.raises(AttributeError):
        _ = lamina.transports.NoSuchTransport  # type: ignore[attr-defined]


def test_old_import_paths_still_work() -> None:
    """``lamina.transport`` and ``lamina.aiohttp_transport`` re-export the classes that
    moved to ``lamina.transports`` (public import paths before the move)."""
    from lamina.aiohttp_transport import AiohttpTransport as OldAiohttp
    from lamina.transport import HttpxTransport as OldHttpx

    assert OldHttpx is lamina.transports.HttpxTransport is lamina.HttpxTransport
    assert OldAiohttp is lamina.transports.AiohttpTransport


def test_lamina_imports_without_aiohttp() -> None:
    """aiohttp is an extra: ``import lamina`` works without it, and asking for
    AiohttpTransport says how to install it."""
    code = (
        "import sys\n"
        "sys.modules['aiohttp'] = None\n"
        "import lamina, lamina.transports\n"
        "print(lamina.HttpxTransport.__name__)\n"
        "try:\n"
        "    lamina.transports.AiohttpTransport\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        "HttpxTransport",
        "AiohttpTransport needs aiohttp: pip install 'lamina[aiohttp]'",
    ]


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_every_name_in_the_error_table_is_an_exception_class(name: str) -> None:
    module, _, qualname = name.rpartition(".")
    found = getattr(importlib.import_module(module), qualname)
    assert isinstance(found, type)
    assert issubclass(found, BaseException)
    assert f"{found.__module__}.{found.__qualname__}" == name


_KEY = types.SimpleNamespace(host="api.test", port=443, ssl=True)


@pytest.mark.parametrize(
    ("raised", "expected", "sent"),
    [
        (httpx.ConnectTimeout("slow"), ConnectTimeout, False),
        (httpx.ReadTimeout("late"), TimeoutError, True),
        (httpx.PoolTimeout("full"), TimeoutError, False),
        (httpx.ReadError("reset"), TransportError, True),
        (aiohttp.ConnectionTimeoutError("slow"), ConnectTimeout, False),
        (aiohttp.SocketTimeoutError("late"), TimeoutError, True),
        (aiohttp.ServerTimeoutError("late"), TimeoutError, True),
        (builtins.TimeoutError(), TimeoutError, True),
        (aiohttp.ClientConnectorError(_KEY, OSError(111, "refused")), ConnectError, False),
        (aiohttp.ServerDisconnectedError(), TransportError, True),
        (aiohttp.ClientPayloadError("truncated"), TransportError, True),
        (ConnectionResetError(104, "reset"), TransportError, True),
    ],
)
def test_both_clients_errors_map_through_one_table(
    raised: BaseException, expected: type[LaminaError], sent: bool
) -> None:
    error = map_error(raised, REQUEST)
    assert type(error) is expected
    assert isinstance(error, LaminaError)
    assert error.request_sent is sent
    assert error.endpoint == "things"
    assert type(raised).__name__ in str(error)


@pytest.mark.parametrize(
    "raised",
    [
        httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."),
        httpx.InvalidURL("Invalid port: 'x'"),
        aiohttp.NonHttpUrlClientError("ftp://api.test/x?token=s3cr3t-abcdef123"),
        aiohttp.InvalidURL("http://api.test:x/?token=s3cr3t-abcdef123"),
    ],
)
def test_a_bad_url_is_a_config_error_without_secrets(raised: Exception) -> None:
    error = map_error(raised, REQUEST)
    assert isinstance(error, ConfigError)
    assert error.field == "url"
    assert error.endpoint == "things"
    assert "s3cr3t" not in str(error)
