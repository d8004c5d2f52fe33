"""The local test server answers HEAD with headers only, so a connection stays usable."""

from __future__ import annotations

from typing import Any

from lamina import Request
from lamina.testing import LocalServer


async def test_head_then_get_on_one_connection(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    transport = transport_factory.pooled(1)  # one connection: the GET reuses it
    head = await transport(Request("HEAD", lamina_server.url_for("/json")))
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0  # what a GET would send
    get = await transport(Request("GET", lamina_server.url_for("/json")))
    assert get.status_code == 200
    assert get.json()["ok"] is True


async def test_204_and_304_carry_no_body_and_keep_the_connection(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    transport = transport_factory.pooled(1)
    for status in (204, 304, 200):
        response = await transport(Request("GET", lamina_server.url_for(f"/status/{status}")))
        assert response.status_code == status
        assert (response.content == b"") is (status != 200)
    assert (await transport(Request("GET", lamina_server.url_for("/json")))).json()["ok"]
