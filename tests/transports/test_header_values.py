"""A header holding CR, LF, NUL or another control character is refused before sending,
with a ConfigError naming the header and never its value, on both transports
(issue 12, item 5)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from lamina import ConfigError, HttpxTransport, Request, ServiceBuilder
from lamina.aiohttp_transport import AiohttpTransport
from lamina.layers import RetryLayer
from lamina.testing import LocalServer

TOKEN = "tok-9f8e7d6c5b4a"

Factory = Callable[..., Any]


@pytest.fixture(params=["httpx", "aiohttp"])
async def make_transport(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        cls = HttpxTransport if request.param == "httpx" else AiohttpTransport
        transport = cls(**options)
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        await transport.aclose()


def assert_no_token(error: BaseException) -> None:
    for text in (str(error), repr(error), repr(error.args)):
        assert TOKEN not in text
        assert "tok-" not in text


@pytest.mark.parametrize(
    ("value", "what"),
    [
        (f"Bearer {TOKEN}\n", "line feed (LF)"),  # a token read from a file
        (f"Bearer {TOKEN}\r\n", "carriage return (CR)"),
        (f"Bearer {TOKEN}\r\nX-Injected: 1", "carriage return (CR)"),
        (f"Bearer {TOKEN}\x00", "NUL byte"),
        (f"Bearer {TOKEN}\x1b", "control character 0x1b"),
    ],
)
async def test_a_control_character_in_a_value_is_refused_before_sending(
    make_transport: Factory, lamina_server: LocalServer, value: str, what: str
) -> None:
    request = Request(
        "GET",
        lamina_server.url_for("/echo"),
        headers={"Authorization": value},
        endpoint="billing",
    )
    with pytest.raises(ConfigError) as info:
        await make_transport()(request)
    error = info.value
    assert error.field == "Authorization"
    assert error.endpoint == "billing"
    assert what in str(error)
    assert_no_token(error)
    assert lamina_server.hits() == 0


async def test_both_transports_say_the_same(lamina_server: LocalServer) -> None:
    request = Request("GET", lamina_server.url_for("/echo"), headers={"X-Api-Key": TOKEN + "\n"})
    messages = []
    for cls in (HttpxTransport, AiohttpTransport):
        async with cls() as transport:
            with pytest.raises(ConfigError) as info:
                await transport(request)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("X-Api-Key: header value holds a line feed (LF)")


async def test_a_control_character_in_a_name_is_refused(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    request = Request("GET", lamina_server.url_for("/echo"), headers={"X-Bad\r\nName": "v"})
    with pytest.raises(ConfigError) as info:
        await make_transport()(request)
    assert info.value.field == "X-Bad\\r\\nName"
    assert "header name" in str(info.value)
    assert lamina_server.hits() == 0


async def test_tab_and_other_text_are_sent(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    value = 'a\tb c; d="e"'
    response = await make_transport()(
        Request("GET", lamina_server.url_for("/echo"), headers={"X-Ok": value})
    )
    assert response.json()["headers"]["x-ok"] == value


async def test_refused_once_not_retried(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    service = ServiceBuilder().layer(RetryLayer(retries=3, backoff=0)).service(make_transport())
    request = Request(
        "POST", lamina_server.url_for("/echo"), headers={"Authorization": TOKEN + "\n"}
    )
    with pytest.raises(ConfigError) as info:
        await service(request)
    assert_no_token(info.value)
    assert lamina_server.hits() == 0
