"""The opt-in layers' events arrive typed: hedge, fallback, chaos, adaptive, OAuth."""

from __future__ import annotations

import asyncio
import uuid

from lamina import Request, Response, ServiceBuilder, events, service_fn
from lamina.layers import ChaosLayer, ClientCredentialsLayer, FallbackLayer, HedgeLayer
from lamina.testing import LocalServer
from lamina.testing.oauth import OAuthUpstream
from lamina.transports import HttpxTransport


async def test_hedge_fallback_and_chaos_events_are_typed() -> None:
    seen: list[events.Event] = []
    calls = 0

    async def slow_then_fast(request: Request) -> Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2 if calls == 1 else 0)
        return Response(200, content=b"{}", request=request)

    with events.subscribe(seen.append):
        hedged = ServiceBuilder([HedgeLayer(delay=0.01)]).service(service_fn(slow_then_fast))
        await hedged(Request("GET", "http://upstream.test/a", endpoint="a"))
        chaos = ChaosLayer(status=503, status_rate=1.0, seed=1)
        failing = ServiceBuilder([FallbackLayer({"ok": False}, statuses=[503]), chaos]).service(
            service_fn(slow_then_fast)
        )
        await failing(Request("GET", "http://upstream.test/b", endpoint="b"))
    kinds = {type(e) for e in seen}
    assert {events.HedgeSent, events.HedgeWon, events.ChaosInjected} <= kinds
    sent = next(e for e in seen if isinstance(e, events.HedgeSent))
    assert sent.hedge == 1
    assert sent.reason == "delay"
    chaos_event = next(e for e in seen if isinstance(e, events.ChaosInjected))
    assert chaos_event.kind == "status"
    assert chaos_event.status == 503
    assert any(isinstance(e, events.FallbackUsed) and e.endpoint == "b" for e in seen)


async def test_token_events_are_typed(lamina_server: LocalServer) -> None:
    oauth = OAuthUpstream.install(
        lamina_server, client_secret="typed-secret-1", prefix=f"/o-{uuid.uuid4().hex[:6]}"
    )
    layer = ClientCredentialsLayer(oauth.token_url, oauth.client_id, "typed-secret-1")
    seen: list[events.Event] = []
    async with HttpxTransport() as transport:
        service = ServiceBuilder([layer]).service(transport)
        with events.subscribe(seen.append, names={"auth.token_fetched", "auth.token_rejected"}):
            await service(Request("GET", oauth.api_url("x"), endpoint="x"))
            oauth.revoke_all()
            await service(Request("GET", oauth.api_url("y"), endpoint="y"))
    await layer.aclose()
    fetched = [e for e in seen if isinstance(e, events.TokenFetched)]
    assert len(fetched) == 2
    assert fetched[0].expires_in > 0
    assert any(isinstance(e, events.TokenRejected) for e in seen)
