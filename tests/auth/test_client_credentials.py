"""ClientCredentialsLayer against a real token endpoint and API on loopback, on every
transport: tokens fetched once and reused, single flight, expiry, 401 refresh, the
token request's own stack, errors that name the token URL and never the secret, and a
token shared through Redis."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import lamina.transports
from lamina import ConfigError, Request, ServiceBuilder
from lamina.layers.client_credentials import (
    ClientCredentialsLayer,
    Token,
    TokenError,
    default_token_layers,
)
from lamina.testing import LocalServer, ManualClock
from lamina.testing.oauth import OAuthUpstream

TRANSPORTS = ["HttpxTransport", "AiohttpTransport", "PyreqwestTransport"]
SECRET = "cs-7f3a9e1b44d0c2aa"


@pytest.fixture
def oauth(lamina_server: LocalServer) -> OAuthUpstream:
    prefix = f"/oauth-{uuid.uuid4().hex[:8]}"
    return OAuthUpstream.install(
        lamina_server, client_id="billing app", client_secret=SECRET, prefix=prefix
    )


@pytest.fixture(params=TRANSPORTS)
async def transport(request: pytest.FixtureRequest) -> Any:
    made = getattr(lamina.transports, request.param)()
    yield made
    await made.aclose()


def layer_for(oauth: OAuthUpstream, **options: Any) -> ClientCredentialsLayer:
    return ClientCredentialsLayer(oauth.token_url, oauth.client_id, SECRET, **options)


async def test_one_token_serves_many_calls_and_is_sent_as_bearer(
    oauth: OAuthUpstream, transport: Any
) -> None:
    layer = layer_for(oauth, scope=["read", "write"])
    service = ServiceBuilder([layer]).service(transport)
    for n in range(5):
        response = await service(Request("GET", oauth.api_url(f"items/{n}")))
        assert response.status_code == 200
    assert oauth.issued == 1
    assert layer.fetches == 1
    sent = oauth.server.requests(f"{oauth.prefix}/api/items/4")[0]
    assert sent.headers["authorization"].startswith("Bearer tok-")
    token_request = oauth.server.requests(f"{oauth.prefix}/token")[0]
    assert "scope=read+write" in token_request.body.decode()
    assert token_request.headers["authorization"].startswith("Basic ")
    assert SECRET not in token_request.body.decode()  # basic: the secret is not in the form
    await layer.aclose()


async def test_concurrent_callers_share_one_fetch(oauth: OAuthUpstream, transport: Any) -> None:
    layer = layer_for(oauth, transport=transport)
    service = ServiceBuilder([layer]).service(transport)
    responses = await asyncio.gather(
        *(service(Request("GET", oauth.api_url(str(n)))) for n in range(50))
    )
    assert [r.status_code for r in responses] == [200] * 50
    assert oauth.issued == 1


async def test_a_token_is_renewed_shortly_before_it_expires(
    oauth: OAuthUpstream, transport: Any
) -> None:
    clock = ManualClock(start=1000.0)
    oauth.expires_in = 120
    layer = layer_for(oauth, refresh_margin=30, clock=clock)
    service = ServiceBuilder([layer]).service(transport)
    await service(Request("GET", oauth.api_url("a")))
    first = await layer.token()
    clock.advance(89)  # 31 s left: still good
    await service(Request("GET", oauth.api_url("b")))
    assert oauth.issued == 1
    clock.advance(2)  # 29 s left: inside the margin
    await service(Request("GET", oauth.api_url("c")))
    assert oauth.issued == 2
    assert (await layer.token()).access_token != first.access_token
    await layer.aclose()


async def test_a_401_refreshes_the_token_once_for_every_caller_and_retries_once(
    oauth: OAuthUpstream, transport: Any
) -> None:
    layer = layer_for(oauth)
    revoked = (await layer.token()).header
    armed = False
    held: list[Request] = []
    all_sent = asyncio.Event()

    class HoldRevoked:
        """Under the auth layer: a call with the revoked token waits until all 20 have
        one, so every 401 comes back after every caller read the token (without it, a
        transport that answers the first call before the others start lets them find
        the new token: 1 refused instead of 20, depending on timing)."""

        def wrap(self, inner: Any) -> Any:
            async def hold(request: Request) -> Any:
                if armed and request.headers.get("authorization") == revoked:
                    held.append(request)
                    if len(held) == 20:
                        all_sent.set()
                    await all_sent.wait()
                return await inner(request)

            return hold

    service = ServiceBuilder([layer, HoldRevoked()]).service(transport)
    await service(Request("GET", oauth.api_url("warm")))
    oauth.revoke_all()  # e.g. the authorization server rotated its keys
    armed = True
    responses = await asyncio.gather(
        *(service(Request("GET", oauth.api_url(str(n)))) for n in range(20))
    )
    assert [r.status_code for r in responses] == [200] * 20
    assert oauth.issued == 2  # twenty 401s for the same token: one refresh, not twenty
    assert oauth.rejected == 20  # each call refused once, then retried once with the new one
    for n in range(20):
        first, retry = oauth.server.requests(f"{oauth.prefix}/api/{n}")
        assert first.headers["authorization"] == revoked != retry.headers["authorization"]
    await layer.aclose()


async def test_a_401_with_a_fresh_token_is_returned_not_looped(
    oauth: OAuthUpstream, transport: Any, lamina_server: LocalServer
) -> None:
    layer = layer_for(oauth)
    service = ServiceBuilder([layer]).service(transport)
    response = await service(Request("GET", lamina_server.url_for("/status/401")))
    assert response.status_code == 401
    assert lamina_server.hits("/status/401") == 2  # the call and one retry, no more
    assert oauth.issued == 2
    await layer.aclose()


async def test_the_token_request_is_retried_by_its_own_stack(
    oauth: OAuthUpstream, transport: Any
) -> None:
    oauth.fail_next = 2  # two 503s, then a token
    instant = ManualClock(autojump=True)  # the backoff sleeps take no time
    layers = default_token_layers(clock=instant)
    layer = layer_for(oauth, auth_method="post", transport=transport, layers=layers)
    service = ServiceBuilder([layer]).service(transport)
    assert (await service(Request("GET", oauth.api_url("x")))).status_code == 200
    assert oauth.server.hits(f"{oauth.prefix}/token") == 3
    assert len(instant.sleeps) == 2
    assert all(0 <= s <= 0.4 for s in instant.sleeps)
    form = oauth.server.requests(f"{oauth.prefix}/token")[-1].body.decode()
    assert "client_id=billing+app" in form
    assert "client_secret=" in form


async def test_a_refused_client_raises_token_error_without_the_secret(
    oauth: OAuthUpstream, transport: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    layer = ClientCredentialsLayer(oauth.token_url, oauth.client_id, SECRET + "-wrong")
    service = ServiceBuilder([layer]).service(transport)
    with pytest.raises(TokenError) as caught:
        await service(Request("GET", oauth.api_url("x"), endpoint="billing"))
    error = caught.value
    assert error.status_code == 401
    assert error.error == "invalid_client"
    assert error.endpoint == "billing"
    assert oauth.token_url in str(error)
    assert "invalid_client" in str(error)
    for text in (str(error), repr(error), repr(layer), caplog.text):
        assert SECRET not in text
    await layer.aclose()


async def test_an_unreachable_token_endpoint_is_a_token_error() -> None:
    instant = ManualClock(autojump=True)
    layers = default_token_layers(1.0, clock=instant)
    layer = ClientCredentialsLayer("http://127.0.0.1:9/token", "id", SECRET, layers=layers)
    transport = lamina.transports.HttpxTransport()
    service = ServiceBuilder([layer]).service(transport)
    with pytest.raises(TokenError, match="token request failed") as caught:
        await service(Request("GET", "http://127.0.0.1:9/api"))
    assert SECRET not in str(caught.value)
    assert len(instant.sleeps) == 2  # three attempts
    await layer.aclose()
    await transport.aclose()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"token_type": "bearer"}, "no usable access_token"),
        ({"access_token": "abc", "token_type": "mac"}, "is not Bearer"),
        ({"access_token": "abc", "expires_in": "soon"}, "expires_in is not a number"),
        ({"access_token": "abc", "expires_in": -5}, "out of range"),
        ({"access_token": "a\nb"}, "no usable access_token"),
        ("not json", "not a JSON object"),
    ],
)
async def test_an_unusable_token_answer_is_a_token_error(
    lamina_server: LocalServer, body: Any, why: str
) -> None:
    path = f"/bad-token-{uuid.uuid4().hex[:8]}"
    lamina_server.route(path, lambda req: (200, body, {}))
    layer = ClientCredentialsLayer(lamina_server.url_for(path), "id", SECRET)
    with pytest.raises(TokenError, match=why):
        await layer.token()
    await layer.aclose()


async def test_a_caller_with_a_deadline_stops_waiting_for_a_slow_token(
    lamina_server: LocalServer, oauth: OAuthUpstream
) -> None:
    slow = lamina_server.url_for(f"{oauth.prefix}/token?ms=1000")
    layer = ClientCredentialsLayer(slow, oauth.client_id, SECRET)
    request = Request("GET", oauth.api_url("x"), deadline=layer.clock.now() + 0.05)
    service = ServiceBuilder([layer]).service(lamina.transports.HttpxTransport())
    with pytest.raises(lamina.TimeoutError) as caught:
        await service(request)
    assert caught.value.request_sent is False
    # it did not wait for the token answer: the server issues it after its 1 s pause
    # (was: under 0.35 s of wall time, which a loaded machine's late timer could pass)
    assert oauth.issued == 0
    assert (await layer.token()).access_token.startswith("tok-")  # the fetch went on
    await layer.aclose()


def test_bad_configuration_names_the_field() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"token_url": "ftp://x/token"}, "token_url"),
        ({"token_url": "https://user:pw@x/token"}, "token_url"),
        ({"client_id": ""}, "client_id"),
        ({"client_secret": "  "}, "client_secret"),
        ({"client_secret": "a\r\nb"}, "client_secret"),
        ({"auth_method": "jwt"}, "auth_method"),
        ({"refresh_margin": -1}, "refresh_margin"),
        ({"extra_params": {"grant_type": "password"}}, "extra_params"),
        ({"scope": 3}, "scope"),
    ]
    base: dict[str, Any] = {
        "token_url": "https://auth.example/token",
        "client_id": "id",
        "client_secret": SECRET,
    }
    for change, field in cases:
        options = {**base, **change}
        with pytest.raises(ConfigError) as caught:
            ClientCredentialsLayer(
                options.pop("token_url"),
                options.pop("client_id"),
                options.pop("client_secret"),
                **options,
            )
        assert caught.value.field == field
        assert SECRET not in str(caught.value)


def test_token_repr_hides_the_token() -> None:
    token = Token("very-secret-token-value", "Bearer", 10.0)
    assert "very-secret-token-value" not in repr(token)


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


async def test_processes_share_one_token_through_redis(
    oauth: OAuthUpstream, transport: Any, redis_url: str
) -> None:
    from lamina.backends import RedisBackend

    prefix = f"t{uuid.uuid4().hex[:10]}"
    # two layers with their own backends stand for two worker processes
    workers = [layer_for(oauth, backend=RedisBackend(redis_url, prefix=prefix)) for _ in range(2)]
    services = [ServiceBuilder([w]).service(transport) for w in workers]
    responses = await asyncio.gather(
        *(services[n % 2](Request("GET", oauth.api_url(str(n)))) for n in range(30))
    )
    assert [r.status_code for r in responses] == [200] * 30
    assert oauth.issued == 1
    assert sum(w.fetches for w in workers) == 1

    # the token is sealed in Redis: a reader of Redis does not get a usable token
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    assert keys
    token = (await workers[0].token()).access_token
    for key in keys:
        assert token.encode() not in (await client.get(key) or b"")

    # a 401 anywhere drops the shared token: the next fetch replaces it for everyone
    oauth.revoke_all()
    assert (await services[0](Request("GET", oauth.api_url("after")))).status_code == 200
    assert oauth.issued == 2
    workers[1].invalidate(await workers[1].token())
    assert (await services[1](Request("GET", oauth.api_url("other")))).status_code == 200
    assert oauth.issued == 2  # worker 1 read worker 0's fresh token from Redis
    for key in keys:
        await client.delete(key)
    await client.aclose()
    for w in workers:
        await w.aclose()


async def test_redis_down_falls_back_to_a_local_token(oauth: OAuthUpstream) -> None:
    from lamina.backends import RedisBackend

    layer = layer_for(oauth, backend=RedisBackend("redis://127.0.0.1:9/0", timeout=0.05))
    transport = lamina.transports.HttpxTransport()
    service = ServiceBuilder([layer]).service(transport)
    assert (await service(Request("GET", oauth.api_url("x")))).status_code == 200
    assert oauth.issued == 1
    await layer.aclose()
    await transport.aclose()


async def test_orchestrator_traces_the_token_events_and_leaks_nothing(
    oauth: OAuthUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
    from lamina.layers import CircuitBreakerLayer

    caplog.set_level(logging.DEBUG)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    auth = layer_for(oauth)

    def with_auth(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Any]:
        layers = APIOrchestrator.default_layers(endpoint, config)
        at = [isinstance(layer, CircuitBreakerLayer) for layer in layers].index(True)
        return [*layers[:at], auth, *layers[at:]]

    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(f"r{n}", oauth.api_url(f"r/{n}")) for n in range(3)],
        mode="parallel",
        log_requests=True,
        log_responses=True,
    )
    async with APIOrchestrator(config, layers=with_auth, tracer_provider=provider) as o:
        first = await o.run()
        oauth.revoke_all()
        second = await o.run()
    assert {r.outcome for r in [*first.endpoints.values(), *second.endpoints.values()]} == {"ok"}
    assert oauth.issued == 2
    tokens = [r.headers["authorization"][7:] for r in oauth.server.requests() if "api" in r.path]
    assert tokens
    assert all(tokens)
    spans = "\n".join(span.to_json() for span in exporter.get_finished_spans())
    assert "auth.token_fetched" in spans
    assert "auth.token_rejected" in spans
    for text in (spans, caplog.text, repr(first), repr(second), repr(auth)):
        assert SECRET not in text
        for token in tokens:
            assert token not in text
    await auth.aclose()


async def test_a_short_lived_token_is_renewed_half_way_not_on_every_call(
    oauth: OAuthUpstream,
) -> None:
    clock = ManualClock(start=50.0)
    oauth.expires_in = 20  # shorter than twice the 30 s margin
    layer = layer_for(oauth, clock=clock)
    transport = lamina.transports.HttpxTransport()
    service = ServiceBuilder([layer]).service(transport)
    for _ in range(5):
        await service(Request("GET", oauth.api_url("a")))
    assert oauth.issued == 1
    clock.advance(9.9)
    await service(Request("GET", oauth.api_url("b")))
    assert oauth.issued == 1
    clock.advance(0.2)  # past half of its 20 s
    await service(Request("GET", oauth.api_url("c")))
    assert oauth.issued == 2
    await layer.aclose()
    await transport.aclose()
