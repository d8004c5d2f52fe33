"""lamina.events (public): typed, frozen events and process-wide subscriptions, fed by the
built-in layers on real calls to the local server."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from lamina import HttpxTransport, Request, Response, Service, ServiceBuilder, events
from lamina.layers import (
    CacheLayer,
    CircuitBreakerLayer,
    RateLimitLayer,
    RetryLayer,
    TracingLayer,
)
from lamina.testing import LocalServer, ManualClock

SECRET = "tok-5e5e5e5e5e5e5e"


async def call(layers: list[Any], url: str, **options: Any) -> Response:
    async with HttpxTransport() as transport:
        service = ServiceBuilder(layers).service(transport)
        response: Response = await service(Request("GET", url, **options))
        return response


async def test_a_retry_arrives_as_a_typed_frozen_event(lamina_server: LocalServer) -> None:
    seen: list[events.Event] = []
    with events.subscribe(seen.append) as subscription:
        await call(
            [RetryLayer(retries=2, backoff=0, jitter=False)],
            lamina_server.url_for("/flaky/ev?fail=1"),
            endpoint="users",
        )
    assert "subscribe" not in repr(subscription)  # names the callback
    (event,) = seen
    assert isinstance(event, events.RetryScheduled)
    assert (event.name, event.endpoint, event.attempt, event.reason) == (
        "retry.scheduled",
        "users",
        2,
        "503",
    )
    assert event.delay == 0
    assert event.url.endswith("/flaky/ev?fail=1")
    assert event.attributes["attempt"] == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.attempt = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.attributes["attempt"] = 3  # type: ignore[index]
    await call([RetryLayer(retries=2, backoff=0)], lamina_server.url_for("/flaky/ev2?fail=1"))
    assert len(seen) == 1  # the with block unsubscribed


async def test_breaker_transitions_and_rejections(lamina_server: LocalServer) -> None:
    seen: list[events.Event] = []
    unsubscribe = events.subscribe(seen.append, names={"breaker.state", "breaker.rejected"})
    try:
        breaker = CircuitBreakerLayer(threshold=1, timeout=60)
        await call([breaker], lamina_server.url_for("/status/503"), endpoint="pay")
        with pytest.raises(Exception, match="open"):
            await call([breaker], lamina_server.url_for("/json"), endpoint="pay")
    finally:
        unsubscribe()
    state, rejected = seen
    assert state == events.BreakerStateChanged(
        name="breaker.state", endpoint="pay", url=state.url, breaker="pay", old="closed", new="open"
    )
    assert isinstance(rejected, events.BreakerRejected)
    assert rejected.retry_after > 0


async def test_cache_decisions_and_limiter_waits(lamina_server: LocalServer) -> None:
    seen: list[events.Event] = []
    clock = ManualClock(autojump=True)
    layers = [CacheLayer(ttl=60, clock=clock), RateLimitLayer(1, 10.0, burst=1, clock=clock)]
    with events.subscribe(seen.append):
        async with HttpxTransport() as transport:
            service = ServiceBuilder(layers).service(transport)
            for path in ("/json?a=1", "/json?a=1", "/json?a=2"):
                await service(Request("GET", lamina_server.url_for(path)))
    kinds = [type(e) for e in seen]
    assert kinds == [events.CacheMiss, events.CacheHit, events.CacheMiss, events.RateLimitWait]
    assert seen[1].age == 0  # type: ignore[attr-defined]
    wait = seen[3]
    assert isinstance(wait, events.RateLimitWait)
    assert wait.seconds > 0


async def test_a_plugin_layer_emits_through_the_public_api(lamina_server: LocalServer) -> None:
    received: list[tuple[str, Mapping[str, Any]]] = []

    class Audit:
        def wrap(self, inner: Service) -> Service:
            async def audited(request: Request) -> Response:
                request = events.listen(request, lambda n, a: received.append((n, a)))
                events.emit(request, "audit.sent", token=f"Bearer {SECRET}", size=3)
                response: Response = await inner(request)
                return response

            return audited  # type: ignore[return-value]

    seen: list[events.Event] = []
    with events.subscribe(seen.append):
        await call(
            [Audit()], lamina_server.url_for("/json"), headers={"Authorization": f"Bearer {SECRET}"}
        )
    (event,) = seen
    assert type(event) is events.Event  # a name lamina does not type
    assert event.name == "audit.sent"
    assert event.attributes["size"] == 3
    assert SECRET not in str(event.attributes["token"])  # scrubbed for subscribers
    assert received == [("audit.sent", {"token": f"Bearer {SECRET}", "size": 3})]  # per call


async def test_attempts_only_when_asked(lamina_server: LocalServer) -> None:
    plain: list[events.Event] = []
    timed: list[events.Event] = []
    with events.subscribe(plain.append), events.subscribe(timed.append, attempts=True):
        await call([TracingLayer()], lamina_server.url_for("/json"))
    assert plain == []
    (attempt,) = timed
    assert isinstance(attempt, events.HttpAttempt)
    assert attempt.duration > 0
    assert not events.wants_attempts(Request("GET", "http://x.test/"))


async def test_a_failing_subscriber_is_logged_and_the_call_goes_on(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: events.Event) -> None:
        raise RuntimeError("observer bug")

    with caplog.at_level(logging.ERROR, logger="lamina"), events.subscribe(broken):
        response = await call(
            [RetryLayer(retries=1, backoff=0)], lamina_server.url_for("/flaky/bad?fail=1")
        )
    assert response.status_code == 200
    assert "event subscriber failed on retry.scheduled" in caplog.text


def test_subscribe_refuses_what_is_not_callable_and_lists_the_types() -> None:
    from lamina import ConfigError

    with pytest.raises(ConfigError) as caught:
        events.subscribe(42)  # type: ignore[arg-type]
    assert caught.value.field == "callback"
    types = events.event_types()
    assert types["retry.scheduled"] is events.RetryScheduled
    assert types["backend.unavailable"] is events.BackendFallback
    subscription = events.subscribe(print)
    subscription.close()
    subscription.close()  # twice is fine
