"""ClientCredentialsLayer, reviewed as a demanding user would use it: a script that never
calls aclose(), Redis failing after the token was fetched, and the token endpoint's
odd but valid ``expires_in`` values. Against the local token server and real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lamina.transports
from lamina import Request, ServiceBuilder
from lamina.layers.client_credentials import ClientCredentialsLayer, TokenError
from lamina.testing import LocalServer, ManualClock
from lamina.testing.oauth import OAuthUpstream

ROOT = Path(__file__).resolve().parents[2]
SECRET = "review-secret-31d9c0"


@pytest.fixture
def oauth(lamina_server: LocalServer) -> OAuthUpstream:
    prefix = f"/oauth-{uuid.uuid4().hex[:8]}"
    return OAuthUpstream.install(
        lamina_server, client_id="review", client_secret=SECRET, prefix=prefix
    )


@pytest.fixture
def redis_url() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no redis on 127.0.0.1:6379")
    yield "redis://127.0.0.1:6379/0"
    client.close()


def test_a_script_that_never_calls_aclose_ends_quietly(oauth: OAuthUpstream) -> None:
    # What a flow (and so `lamina run`) does: the layer owns its token transport and
    # nobody calls aclose(); asyncio.run's shutdown must close it without a traceback.
    script = textwrap.dedent(
        f"""
        import asyncio
        from lamina import Request, ServiceBuilder
        from lamina.layers.client_credentials import ClientCredentialsLayer, TokenError
        from lamina.transports import HttpxTransport

        async def main():
            layer = ClientCredentialsLayer({oauth.token_url!r}, "review", {SECRET!r})
            transport = HttpxTransport()
            service = ServiceBuilder([layer]).service(transport)
            response = await service(Request("GET", {oauth.api_url("x")!r}))
            print(response.status_code)
            await transport.aclose()

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "always"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "200"
    assert "Traceback" not in done.stderr
    assert "error occurred" not in done.stderr
    assert "unclosed" not in done.stderr.lower()


@pytest.mark.parametrize("on_error", ["local", "closed"])
async def test_redis_failing_after_the_fetch_keeps_the_token(
    oauth: OAuthUpstream, redis_url: str, on_error: str
) -> None:
    from lamina.backends import RedisBackend
    from lamina.backends.redis_connection import RedisUnavailable

    backend = RedisBackend(redis_url, prefix=f"r{uuid.uuid4().hex[:10]}", on_error=on_error)
    layer = ClientCredentialsLayer(oauth.token_url, "review", SECRET, backend=backend)
    shared = layer._shared
    assert shared is not None
    real_run = shared.run
    calls = 0

    async def run(op: Any, **options: Any) -> Any:
        nonlocal calls
        calls += 1
        if oauth.issued:  # the token was fetched: Redis goes down from here on
            raise RedisUnavailable("redis went down")
        return await real_run(op, **options)

    shared.run = run  # type: ignore[method-assign]
    transport = lamina.transports.HttpxTransport()
    service = ServiceBuilder([layer]).service(transport)
    response = await service(Request("GET", oauth.api_url("x")))
    assert response.status_code == 200
    assert oauth.issued == 1  # not a second token because storing the first one failed
    assert layer.fetches == 1
    assert calls >= 2
    await layer.aclose()
    await transport.aclose()
    await backend.aclose()


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        ("1800.5", 1800.5),  # a number sent as a string, with a fraction
        (" 600 ", 600.0),
        (4_000_000_000, 10 * 365 * 86400.0),  # "does not expire": capped, not refused
        (1e12, 10 * 365 * 86400.0),
    ],
)
async def test_odd_but_usable_expires_in_values_give_a_token(
    lamina_server: LocalServer, expires_in: object, lifetime: float
) -> None:
    path = f"/tok-{uuid.uuid4().hex[:8]}"
    lamina_server.route(
        path,
        lambda req: (
            200,
            {"access_token": "abc", "token_type": "Bearer", "expires_in": expires_in},
            {},
        ),
    )
    clock = ManualClock(start=100.0)
    layer = ClientCredentialsLayer(lamina_server.url_for(path), "review", SECRET, clock=clock)
    token = await layer.token()
    assert token.expires_at == pytest.approx(100.0 + lifetime)
    assert token.renew_at == pytest.approx(100.0 + lifetime - 30.0)
    await layer.aclose()


async def test_a_failed_early_refresh_keeps_using_the_unexpired_token(
    oauth: OAuthUpstream,
) -> None:
    # The layer renews 30 s before expiry; if the token endpoint is down at that moment,
    # the token it holds is still good: calls go on with it until it really expires.
    clock = ManualClock(start=1000.0)
    oauth.expires_in = 3600
    layer = ClientCredentialsLayer(oauth.token_url, "review", SECRET, clock=clock, layers=[])
    transport = lamina.transports.HttpxTransport()
    service = ServiceBuilder([layer]).service(transport)
    assert (await service(Request("GET", oauth.api_url("a")))).status_code == 200
    held = layer._token
    assert held is not None
    clock.advance(3600 - 10)  # inside the refresh margin, not expired
    oauth.fail_next = 100  # the token endpoint answers 503 from now on
    response = await service(Request("GET", oauth.api_url("b")))
    assert response.status_code == 200
    assert response.request is not None
    assert response.request.headers["authorization"] == held.header
    clock.advance(20)  # now it has expired: the refresh failure is the call's error
    with pytest.raises(TokenError, match="503"):
        await service(Request("GET", oauth.api_url("c")))
    oauth.fail_next = 0
    assert (await service(Request("GET", oauth.api_url("d")))).status_code == 200
    assert oauth.issued == 2
    await layer.aclose()
    await transport.aclose()


@pytest.mark.parametrize("kind", ["HttpxTransport", "AiohttpTransport", "PyreqwestTransport"])
async def test_a_401_is_refreshed_also_when_the_layer_sits_outside_the_parse_layer(
    oauth: OAuthUpstream, kind: str
) -> None:
    # layers=[auth, *defaults] is the natural way to add it: the parse layer inside it
    # turns the 401 into an HTTPStatusError, which must get the same one refresh.
    from lamina.layers import ParseLayer

    layer = ClientCredentialsLayer(oauth.token_url, "review", SECRET)
    transport = getattr(lamina.transports, kind)()
    service = ServiceBuilder([layer, ParseLayer()]).service(transport)
    assert (await service(Request("GET", oauth.api_url("a")))).value["ok"] is True
    oauth.revoke_all()
    response = await service(Request("GET", oauth.api_url("b")))
    assert response.value["ok"] is True
    assert oauth.issued == 2
    refusing = f"/refuses-{uuid.uuid4().hex[:8]}"  # refuses every token: one retry, no loop
    oauth.server.route(refusing, lambda req: (401, {"error": "invalid_token"}, {}))
    with pytest.raises(lamina.HTTPStatusError) as caught:
        await service(Request("GET", oauth.server.url_for(refusing)))
    assert caught.value.status_code == 401
    assert oauth.issued == 3
    await layer.aclose()
    await transport.aclose()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"token_timeout": -1}, "token_timeout"),
        ({"layers": "retry"}, "layers"),  # a string is not a list of layers
        ({"layers": [1, 2]}, "layers"),
        ({"scope": ["read", "wr ite"]}, "scope"),  # RFC 6749 3.3: no space in a scope
        ({"scope": ["read", ""]}, "scope"),
        ({"scope": "read\x00"}, "scope"),
        ({"transport": "httpx"}, "transport"),
        ({"clock": 3}, "clock"),
    ],
)
def test_bad_options_fail_at_construction_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    from lamina import ConfigError

    with pytest.raises(ConfigError) as caught:
        ClientCredentialsLayer("http://127.0.0.1:1/token", "review", SECRET, **options)
    assert caught.value.field == field
    assert SECRET not in str(caught.value)


def test_a_backend_that_cannot_share_a_token_is_refused() -> None:
    # A backend of one's own (neither Redis nor memory) holds no token: refused, not
    # silently turned into a per-process token.
    from lamina import ConfigError
    from lamina.backends.base import Backend
    from lamina.backends.memory import InMemoryBackend

    class Custom:
        kind = "custom"

        def __init__(self) -> None:
            self.memory = InMemoryBackend()

        def limiter(self, *args: Any, **kwargs: Any) -> Any:
            return self.memory.limiter(*args, **kwargs)

        def rate_limiter(self, *args: Any, **kwargs: Any) -> Any:
            return self.memory.rate_limiter(*args, **kwargs)

        def breaker_backend(self) -> Any:
            return self.memory.breaker_backend()

        def cache_store(self, *args: Any, **kwargs: Any) -> Any:
            return self.memory.cache_store(*args, **kwargs)

    assert isinstance(Custom(), Backend)
    url = "http://127.0.0.1:1/token"
    assert ClientCredentialsLayer(url, "review", SECRET, backend=InMemoryBackend())._shared is None
    with pytest.raises(ConfigError) as caught:
        ClientCredentialsLayer(url, "review", SECRET, backend=Custom())
    assert caught.value.field == "backend"


def test_a_token_stack_that_would_log_bodies_is_refused() -> None:
    # The token request's form (auth_method="post") holds the client secret and its
    # answer holds the token: a logging layer with log_bodies would write both out.
    from lamina import ConfigError
    from lamina.layers import LoggingLayer

    with pytest.raises(ConfigError) as caught:
        ClientCredentialsLayer(
            "http://127.0.0.1:1/token",
            "review",
            SECRET,
            auth_method="post",
            layers=[LoggingLayer(log_bodies=True)],
        )
    assert caught.value.field == "layers"
    assert "log_bodies" in str(caught.value)


async def test_a_logged_token_stack_shows_neither_secret_nor_token(
    oauth: OAuthUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from lamina.layers import LoggingLayer

    caplog.set_level(logging.DEBUG)
    layer = ClientCredentialsLayer(
        oauth.token_url, "review", SECRET, auth_method="post", layers=[LoggingLayer()]
    )
    token = await layer.token()
    assert "oauth" in caplog.text  # the token request was logged
    assert SECRET not in caplog.text
    assert token.access_token not in caplog.text
    await layer.aclose()


async def test_a_secret_in_the_token_urls_query_is_never_shown(
    lamina_server: LocalServer,
) -> None:
    # Some providers want a key in the token URL's query: reprs and errors redact it.
    from lamina.layers.client_credentials import TokenError

    key = "subkey-8f7e6d5c"
    path = f"/refuse-{uuid.uuid4().hex[:8]}"
    lamina_server.route(path, lambda req: (401, {"error": "invalid_client"}, {}))
    url = lamina_server.url_for(path) + f"?subscription-key={key}&tenant=t1"
    layer = ClientCredentialsLayer(url, "review", SECRET)
    transport = lamina.transports.HttpxTransport()
    service = ServiceBuilder([layer]).service(transport)
    with pytest.raises(TokenError) as caught:
        await service(Request("GET", lamina_server.url_for("/json")))
    assert lamina_server.requests(path)[0].query.get("subscription-key") in (key, [key])
    for text in (str(caught.value), repr(caught.value), repr(layer), repr(service)):
        assert key not in text
        assert "tenant=t1" in text or "ClientCredentials" in text
    assert key not in caught.value.token_url
    await layer.aclose()
    await transport.aclose()


async def test_an_unreachable_token_url_with_a_key_in_its_query_is_not_shown() -> None:
    from lamina.layers.client_credentials import TokenError

    key = "subkey-0a1b2c3d"
    url = f"http://127.0.0.1:9/token?subscription-key={key}"
    layer = ClientCredentialsLayer(url, "review", SECRET, layers=[])
    with pytest.raises(TokenError) as caught:
        await layer.token()
    assert "token request failed" in str(caught.value)
    assert key not in str(caught.value)
    assert key not in repr(caught.value)
    await layer.aclose()


async def test_a_waiting_process_outlasts_the_fetching_process_lock(
    oauth: OAuthUpstream, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process holds the fetch lock (its lease: 30 s, more with a slow token
    # endpoint) and stores the token late. A waiting process must wait as long as that
    # lock can live, not give up earlier. Time is scaled: polls every 2 s (patched), each
    # lasting 5 ms here, so the 11 polls that used to bound the wait take ~0.06 s.
    import asyncio
    import types

    import redis.asyncio as aioredis

    import lamina.layers.client_credentials as cc
    from lamina.backends import RedisBackend

    real_sleep = asyncio.sleep

    async def scaled_sleep(delay: float, result: Any = None) -> Any:
        return await real_sleep(delay / 400, result)

    proxy = types.SimpleNamespace(**vars(asyncio))
    proxy.sleep = scaled_sleep
    monkeypatch.setattr(cc, "asyncio", proxy)
    monkeypatch.setattr(cc, "_POLL", 2.0)

    prefix = f"w{uuid.uuid4().hex[:10]}"
    holder = ClientCredentialsLayer(
        oauth.token_url, "review", SECRET, backend=RedisBackend(redis_url, prefix=prefix)
    )
    waiter = ClientCredentialsLayer(
        oauth.token_url, "review", SECRET, backend=RedisBackend(redis_url, prefix=prefix)
    )
    assert holder._shared is not None
    key = holder._shared.key("oauth", holder._name)
    client = aioredis.Redis.from_url(redis_url)
    await client.set(key + ":lock", "another-process", px=30_000)  # key(..., "lock")
    assert await client.get(holder._shared.key("oauth", holder._name, "lock"))

    async def fetch_late() -> None:
        await real_sleep(0.2)
        token = await holder._fetch(None)
        await holder._write_shared(key, token)

    late = asyncio.ensure_future(fetch_late())
    token = await waiter.token()
    await late
    assert waiter.fetches == 0  # it read the other process's token
    assert holder.fetches == 1
    assert token.access_token.startswith("tok-")
    await client.delete(key, key + ":lock")
    await client.aclose()
    for layer in (holder, waiter):
        await layer.aclose()
