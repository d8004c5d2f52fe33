"""``lamina.Client``: ``response.url`` is the URL sent, the call's and the client's
``params`` merged into its query, as httpx's ``response.url`` is; against the real local
server on every transport."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lamina.client import Client
from lamina.testing import LocalServer

_spec = importlib.util.spec_from_file_location(
    "_lamina_transport_contract_client_url",
    Path(__file__).resolve().parent / "transports" / "conftest.py",
)
assert _spec is not None
assert _spec.loader is not None
_contract: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_contract)


@pytest.fixture(params=list(_contract.TRANSPORTS))
async def transport_factory(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    factory = _contract.TransportFactory(request.param)
    yield factory
    for transport in factory.made:
        await transport.aclose()


@pytest.mark.parametrize(
    ("path", "client_params", "params", "sent"),
    [
        ("/echo", {"page": "1"}, {"q": "x y"}, "page=1&q=x+y"),
        # the URL's own query is kept and params merged over it by name (not replaced,
        # as httpx.AsyncClient would: httpx#3433)
        ("/echo?a=1", None, {"b": ["2", "3"]}, "a=1&b=2&b=3"),
        ("/echo?a=1&q=old", {"page": "1"}, "q=new", "a=1&q=new&page=1"),
        ("/echo", {"page": "1"}, None, "page=1"),
    ],
    ids=["merged", "url-query-and-list", "call-replaces-url-value", "client-params-only"],
)
async def test_response_url_is_the_url_sent_with_params_merged(
    transport_factory: Any,
    lamina_server: LocalServer,
    path: str,
    client_params: Any,
    params: Any,
    sent: str,
) -> None:
    base = lamina_server.url + "/"
    async with Client(
        transport=transport_factory(), base_url=base, params=client_params, layers=[]
    ) as client:
        response = await client.get(path, params=params)
    assert response.status_code == 200
    assert response.url == f"{lamina_server.url}/echo?{sent}"
    query = parse_qs(urlsplit(response.url).query)
    # the query the server received is the one response.url names
    received = response.json()["query"]
    assert {name: [value] for name, value in received.items()} == {
        name: values[-1:] for name, values in query.items()
    }
    assert response.request is not None
    assert response.request.url == response.url


async def test_a_call_without_params_keeps_its_url(
    transport_factory: Any, lamina_server: LocalServer
) -> None:
    async with Client(transport=transport_factory(), layers=[]) as client:
        url = lamina_server.url_for("/echo?a=1")
        response = await client.get(url)
    assert response.url == url


async def test_an_errors_response_url_is_the_url_sent_too(
    transport_factory: Any, lamina_server: LocalServer
) -> None:
    """A parse layer raises for a 404: the error's response (and request) name the URL
    as sent, params merged, as a returned response does. Was: the URL without params."""
    from lamina import HTTPStatusError
    from lamina.layers.parse import ParseLayer

    async with Client(
        transport=transport_factory(),
        base_url=lamina_server.url,
        params={"page": "1"},
        layers=[ParseLayer()],
    ) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.get("/status/404", params={"q": "x y"})
    sent = f"{lamina_server.url}/status/404?page=1&q=x+y"
    assert caught.value.response is not None
    assert caught.value.response.url == sent
    assert caught.value.request is not None
    assert caught.value.request.url == sent
    assert lamina_server.requests("/status/404")[-1].query == {"page": "1", "q": "x y"}


async def test_an_errors_message_does_not_show_a_secret_param(
    transport_factory: Any, lamina_server: LocalServer
) -> None:
    from lamina import HTTPStatusError
    from lamina.layers.parse import ParseLayer

    async with Client(transport=transport_factory(), layers=[ParseLayer()]) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.get(lamina_server.url_for("/status/404"), params={"api_key": "s3cr3t"})
    assert caught.value.response is not None
    assert "api_key=s3cr3t" in caught.value.response.url  # the URL as sent, as httpx's
    assert "s3cr3t" not in str(caught.value)
    assert "s3cr3t" not in repr(caught.value)
    assert "s3cr3t" not in repr(caught.value.request)
