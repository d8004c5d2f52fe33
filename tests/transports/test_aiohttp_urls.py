"""AiohttpTransport sends a URL exactly as httpx would; one that httpx leaves unchanged
skips httpx's parser (``_is_plain``), which costs ~20x more than the check."""

from __future__ import annotations

import random

import httpx
import pytest
from yarl import URL

from lamina.transports.aiohttp import _is_plain, _parse_url

_SEGMENT = "ABCXYZabcxyz0189-_~!$&'()*+,;=:@."
_QUERY = _SEGMENT + "/?"
_HOSTS = [
    "a", "ex-ample.com", "127.0.0.1", "x.y.z", "-a", "a-", "1.2.3.4.5", "0.0.0.0",
    "xn--bcher-kva.example", "a..b", "localhost", "999.1.1.1", "1", "123", "1.2.3",
    "01.2.3.4", "255.255.255.255", "256.1.1.1", "a.1", "1.a", "Upper.example",
]  # fmt: skip
_PORTS = ["", ":80", ":443", ":8080", ":0", ":65535", ":65536", ":00080", ":1"]


def _random_url(rng: random.Random) -> str:
    path = "".join(
        "/" + "".join(rng.choice(_SEGMENT) for _ in range(rng.randint(0, 4)))
        for _ in range(rng.randint(1, 3))
    )
    query = rng.choice(["", "?" + "".join(rng.choice(_QUERY) for _ in range(rng.randint(0, 8)))])
    scheme = rng.choice(["http", "https"])
    return f"{scheme}://{rng.choice(_HOSTS)}{rng.choice(_PORTS)}{path}{query}"


def test_a_plain_url_is_one_httpx_leaves_unchanged() -> None:
    rng = random.Random(13)
    plain = 0
    for _ in range(4000):
        url = _random_url(rng)
        if _is_plain(url):
            plain += 1
            assert str(httpx.URL(url)) == url
    assert plain > 1000  # the check is not vacuous


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/json?i=1",
        "https://api.example.com/v1/users/42?fields=a,b",
        "http://Example.COM:80/a/../b?x=%7e y",
        "https://example.com:443/",
        "http://example.com",
        "http://example.com/%2E%2E/x",
        "http://b\u00fccher.example/caf\u00e9?q=\u00e9",
        "http://example.com/.well-known/x",
    ],
)
def test_the_url_sent_is_httpxs(url: str) -> None:
    assert _parse_url(url) == URL(str(httpx.URL(url)), encoded=True)
    assert str(_parse_url(url)) == str(httpx.URL(url))


def test_a_url_httpx_refuses_is_refused() -> None:
    assert not _is_plain("http://999.1.1.1/x")
    with pytest.raises(httpx.InvalidURL):
        _parse_url("http://999.1.1.1/x")
