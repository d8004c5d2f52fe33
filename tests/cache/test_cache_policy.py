"""RFC 9111 storability, lifetime and stale-if-error rules."""

from __future__ import annotations

import pytest

from lamina import (
    CircuitOpenError,
    ConfigError,
    ConnectError,
    HTTPStatusError,
    ParseError,
    RateLimitExceeded,
    Request,
    Response,
    TimeoutError,
    TransportError,
)
from lamina._headers import Headers
from lamina.layers.cache.policy import parse_cache_control, serves_stale, storable, vary_names

ANON = Request("GET", "http://api.test/x")
AUTHED = Request("GET", "http://api.test/x", headers={"Authorization": "Bearer t0ken"})


def resp(status: int = 200, **headers: str) -> Response:
    return Response(status, headers={k.replace("_", "-"): v for k, v in headers.items()})


def decide(response: Response, request: Request = ANON, **kw: object) -> float | None:
    kw.setdefault("ttl", 300.0)
    kw.setdefault("cache_authorized", False)
    decision = storable(request, response, **kw)  # type: ignore[arg-type]
    return None if decision is None else decision.ttl


def test_parse_cache_control() -> None:
    headers = Headers(
        [("Cache-Control", 'Public, MAX-AGE=60, no-cache="set-cookie"'), ("cache-control", "x")]
    )
    assert parse_cache_control(headers) == {
        "public": None,
        "max-age": "60",
        "no-cache": "set-cookie",
        "x": None,
    }


def test_plain_success_is_stored_for_the_configured_ttl() -> None:
    assert decide(resp()) == 300.0
    assert decide(resp(204)) == 300.0


@pytest.mark.parametrize("status", [206, 301, 304, 404, 500, 503])
def test_other_statuses_are_not_stored(status: int) -> None:
    assert decide(resp(status)) is None


@pytest.mark.parametrize(
    "cache_control", ["no-store", "no-cache", "private", "max-age=0", "s-maxage=0, max-age=60"]
)
def test_response_directives_that_prevent_storing(cache_control: str) -> None:
    assert decide(resp(cache_control=cache_control)) is None


def test_request_no_store_prevents_storing() -> None:
    request = ANON.replace(headers={"Cache-Control": "no-store"})
    assert decide(resp(), request) is None


def test_lifetime_is_the_smaller_of_server_and_configured() -> None:
    assert decide(resp(cache_control="max-age=60")) == 60.0
    assert decide(resp(cache_control="max-age=9999")) == 300.0
    assert decide(resp(cache_control="max-age=60, s-maxage=30")) == 30.0  # shared cache
    assert decide(resp(cache_control="max-age=60"), ttl=10.0) == 10.0


def test_age_is_subtracted_and_invalid_lifetimes_mean_stale() -> None:
    assert decide(resp(cache_control="max-age=60", age="45")) == 15.0
    assert decide(resp(cache_control="max-age=60", age="60")) is None
    assert decide(resp(cache_control="max-age=soon")) is None


def test_expires_relative_to_date() -> None:
    headers = {
        "date": "Wed, 21 Oct 2015 07:28:00 GMT",
        "expires": "Wed, 21 Oct 2015 07:29:00 GMT",
    }
    assert decide(Response(200, headers=headers)) == 60.0
    assert decide(Response(200, headers={"expires": "0"})) is None  # invalid = already expired
    both = {**headers, "cache-control": "max-age=5"}
    assert decide(Response(200, headers=both)) == 5.0  # max-age wins over Expires


def test_vary() -> None:
    assert vary_names(resp(vary="Accept-Language, accept")) == ("accept", "accept-language")
    assert vary_names(resp()) == ()
    assert vary_names(resp(vary="Accept, *")) is None
    assert decide(resp(vary="*")) is None
    assert decide(resp(vary="Accept")) == 300.0


def test_authorization_requires_permission_from_response_or_user() -> None:
    assert decide(resp(), AUTHED) is None
    assert decide(resp(cache_control="public"), AUTHED) == 300.0
    assert decide(resp(cache_control="s-maxage=20"), AUTHED) == 20.0
    assert decide(resp(cache_control="must-revalidate, max-age=9"), AUTHED) == 9.0
    assert decide(resp(), AUTHED, cache_authorized=True) == 300.0


def test_private_only_with_opt_in_and_credentials() -> None:
    private = resp(cache_control="private, max-age=30")
    assert decide(private, AUTHED) is None
    assert decide(private, ANON, cache_authorized=True) is None  # would be served to anyone
    assert decide(private, AUTHED, cache_authorized=True) == 30.0


def test_stale_ok_unless_revalidation_is_required() -> None:
    def stale_ok(response: Response) -> bool:
        decision = storable(AUTHED, response, ttl=300.0, cache_authorized=True)
        assert decision is not None
        return decision.stale_ok

    assert stale_ok(resp())
    assert stale_ok(resp(cache_control="max-age=10"))
    assert not stale_ok(resp(cache_control="must-revalidate"))
    assert not stale_ok(resp(cache_control="proxy-revalidate"))
    assert not stale_ok(resp(cache_control="s-maxage=10"))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransportError("reset"), True),
        (ConnectError("refused"), True),
        (TimeoutError("slow"), True),
        (CircuitOpenError(retry_after=3.0), True),
        (RateLimitExceeded(), True),
        (HTTPStatusError("x", status_code=503), True),
        (HTTPStatusError("x", status_code=500), True),
        (HTTPStatusError("x", status_code=429), True),
        (HTTPStatusError("x", status_code=404), False),
        (HTTPStatusError("x", status_code=401), False),
        (ParseError("bad json"), False),
        (ConfigError("bad", field="url"), False),
        (ValueError("bug"), False),
    ],
)
def test_which_failures_serve_stale(error: BaseException, expected: bool) -> None:
    assert serves_stale(error) is expected


def test_expires_without_date_is_relative_to_now() -> None:
    import time
    from email.utils import formatdate

    ttl = decide(Response(200, headers={"expires": formatdate(time.time() + 120, usegmt=True)}))
    assert ttl is not None
    assert 100 < ttl <= 120
